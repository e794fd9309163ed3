/**
 * Serving the Skytale MCP server over stdio: stdout carries only JSON-RPC,
 * logs go to stderr, and the server stops when the client closes stdin.
 *
 * @module
 */
import { errorMessage } from "../_util.ts";
import { logLine } from "../runtime/env.ts";
import { onStdinEnd, processStdio, releaseStdin } from "../runtime/stdio.ts";
import { StdioServerTransport } from "./_sdk_server.ts";
import { buildMcpServer, type McpServerOptions } from "./server.ts";
import type { ChannelManagerLike } from "./tools.ts";

/** The longest the server keeps answering requests after stdin closed, in ms. */
const DRAIN_MAX_MS = 120_000;

/** A server running on stdio. */
export interface StdioServing {
  /** Resolves once the server has stopped (stdin closed, or {@linkcode StdioServing.close}). */
  readonly done: Promise<void>;
  /** Stops serving; idempotent. Does not close the manager. */
  close(): Promise<void>;
}

/**
 * Serves the Skytale tools over this process's stdin and stdout.
 *
 * @param manager The channel manager the tools act on.
 * @param options Server name, version and tool deadlines.
 * @returns The running server.
 */
export async function serveStdio(
  manager: ChannelManagerLike,
  options: McpServerOptions = {},
): Promise<StdioServing> {
  const server = buildMcpServer(manager, options);
  const { stdin, stdout } = processStdio();
  const transport = new StdioServerTransport(stdin, stdout);
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  let started = false;
  const close = async (): Promise<void> => {
    // closing the server closes the transport, whose onclose calls back in here
    if (started) return await done;
    started = true;
    await (async () => {
      try {
        await server.close();
      } catch (e) {
        logLine(`skytale mcp: error while closing: ${errorMessage(e)}`);
      }
      releaseStdin();
      resolveDone();
    })();
  };
  transport.onerror = (e) => logLine(`skytale mcp: stdio transport error: ${e.message}`);
  // Requests a client sent before closing stdin are answered before the server stops (a piped
  // script gets every answer); each tool has its own deadline, so this wait is bounded too.
  let inFlight = 0;
  let drained: (() => void) | undefined;
  onStdinEnd(() => {
    if (inFlight === 0) return void close();
    const bound = setTimeout(() => void close(), DRAIN_MAX_MS);
    drained = () => {
      clearTimeout(bound);
      void close();
    };
  });
  await server.connect(transport);
  const receive = transport.onmessage;
  transport.onmessage = (m) => {
    if ("method" in m && "id" in m) inFlight++;
    receive?.(m);
  };
  const send = transport.send.bind(transport);
  transport.send = async (m) => {
    try {
      return await send(m);
    } finally {
      if (!("method" in m) && "id" in m && --inFlight <= 0) drained?.();
    }
  };
  server.server.onclose = () => void close();
  return { done, close };
}
