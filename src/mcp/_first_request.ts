/**
 * Registrations a server makes when its first message other than
 * `initialize` arrives, so that `initialize` is answered before they load:
 * the tools and prompts, with their modules and zod schemas, took about 10 ms,
 * a third of what the stdio server added to the SDK's own start
 * (docs/DECISIONS.md, "Cold start"). That message and every later one wait,
 * in order, until they are made, so no client sees a list before they are in
 * it; for that reason, too, making them sends no `list_changed` notification.
 *
 * @module
 */
import { errorMessage } from "../_util.ts";
import { logLine } from "../runtime/env.ts";
import type { JSONRPCMessage, MessageExtraInfo, Transport } from "./_sdk.ts";
import type { McpServer } from "./_sdk_server.ts";

type Delivery = [JSONRPCMessage, MessageExtraInfo | undefined];

/**
 * Makes the registrations on the server's first message other than
 * `initialize`, on whatever transport it is connected to. The server must
 * declare, when it is built, every capability they need: the SDK takes none
 * after connecting.
 *
 * @param server The server, not yet connected.
 * @param load Loads what registers (called once); resolves to the registering function.
 */
export function registerOnFirstRequest(
  server: McpServer,
  load: () => Promise<() => void>,
): void {
  let done = false;
  let loading: Promise<void> | undefined;
  const ready = () =>
    loading ??= load().then((register) => quietly(server, register)).catch((e) =>
      logLine(`skytale mcp: could not register the tools and prompts: ${errorMessage(e)}`)
    ).finally(() => done = true);
  const gate = (transport: Transport) => {
    const dispatch = transport.onmessage;
    let queue: Delivery[] | undefined;
    transport.onmessage = (message, extra) => {
      if (queue) return void queue.push([message, extra]);
      if (done || ("method" in message && message.method === "initialize")) {
        return dispatch?.(message, extra);
      }
      const held: Delivery[] = queue = [[message, extra]];
      void ready().then(() => {
        // In order, with any that arrive meanwhile; a server closed meanwhile answers nothing.
        for (let next = held.shift(); next; next = held.shift()) {
          if (server.server.transport === transport) dispatch?.(...next);
        }
        queue = undefined;
      });
    };
  };
  const connect = server.connect.bind(server);
  server.connect = async (transport) => {
    // The gate goes in when the SDK starts the transport: after it took `onmessage`, and before
    // a transport holding early messages (InMemoryTransport, a channel session) hands them over.
    const start = transport.start;
    transport.start = () => {
      transport.start = start;
      gate(transport);
      return start.call(transport);
    };
    try {
      await connect(transport);
    } finally {
      transport.start = start;
    }
  };
}

/** Registers without the `list_changed` notifications the SDK sends for tools and prompts. */
function quietly(server: McpServer, register: () => void): void {
  const { sendToolListChanged, sendPromptListChanged } = server;
  server.sendToolListChanged = server.sendPromptListChanged = () => {};
  try {
    register();
  } finally {
    server.sendToolListChanged = sendToolListChanged;
    server.sendPromptListChanged = sendPromptListChanged;
  }
}
