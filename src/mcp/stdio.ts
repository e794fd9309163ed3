/**
 * Serving the Skytale MCP server over stdio: stdout carries only JSON-RPC,
 * logs go to stderr, and the server stops when the client closes stdin.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";
import { onStdinEnd, processStdio, releaseStdin } from "../runtime/stdio.ts";
import { StdioServerTransport } from "./_sdk_server.ts";
import { buildMcpServer, type McpServerOptions } from "./server.ts";
import type { ChannelManagerLike } from "./tools.ts";

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
        logLine(`skytale mcp: error while closing: ${e instanceof Error ? e.message : String(e)}`);
      }
      releaseStdin();
      resolveDone();
    })();
  };
  transport.onerror = (e) => logLine(`skytale mcp: stdio transport error: ${e.message}`);
  onStdinEnd(() => void close());
  await server.connect(transport);
  server.server.onclose = () => void close();
  return { done, close };
}
