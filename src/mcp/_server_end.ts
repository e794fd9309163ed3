/**
 * The serving end of a {@linkcode SkytaleTransport} with `role: "server"`.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { type ChannelServing, serveChannel } from "./serve_channel.ts";
import type { JsonRpcMessage, McpTransport, TaggedChannels } from "./transport_contract.ts";

/**
 * The serving end of a {@linkcode SkytaleTransport} with `role: "server"`:
 * {@linkcode serveChannel} limited to one session, whose messages it hands to
 * the transport. When that session ends, the transport closes.
 */
export class _ServerEnd {
  #mgr: TaggedChannels;
  #channel: string;
  #deliver: (m: JsonRpcMessage) => void;
  #ended: (reason: string) => void;
  #serving: Promise<ChannelServing> | undefined;
  #session: McpTransport | undefined;
  sessionId: string | undefined;

  constructor(
    mgr: TaggedChannels,
    channel: string,
    deliver: (m: JsonRpcMessage) => void,
    ended: (reason: string) => void,
  ) {
    this.#mgr = mgr;
    this.#channel = channel;
    this.#deliver = deliver;
    this.#ended = ended;
  }

  start(): Promise<ChannelServing> {
    this.#serving ??= serveChannel(this.#mgr, this.#channel, () => ({
      connect: async (t: McpTransport) => {
        this.#session = t;
        this.sessionId = t.sessionId;
        t.onmessage = (m) => this.#deliver(m);
        await t.start();
      },
      close: () => Promise.resolve(),
    }), {
      maxSessions: 1,
      onSession: (e) => {
        if (e.type === "end") {
          this.#ended(`client "${e.session.identity}" ended the session (${e.reason ?? "closed"})`);
        }
      },
    });
    return this.#serving;
  }

  async send(m: JsonRpcMessage): Promise<void> {
    if (!this.#session) {
      throw new ValidationError(
        "invalid_argument",
        `No MCP client has opened a session on "${this.#channel}" yet: a server end only answers`,
      );
    }
    await this.#session.send(m);
  }

  async close(): Promise<void> {
    const serving = this.#serving;
    this.#serving = undefined;
    await (await serving?.catch(() => undefined))?.close();
  }
}
