/**
 * `skytale mcp [--http HOST:PORT]`: runs the Skytale MCP server on stdio (the
 * default) or over Streamable HTTP, configured by the environment
 * (`SKYTALE_IDENTITY`, `SKYTALE_RELAY`, `SKYTALE_API_KEY`, `SKYTALE_API_URL`,
 * `SKYTALE_DATA_DIR`). It shuts down cleanly, state flushed and relay
 * connection closed, when stdin closes (stdio) or on SIGINT/SIGTERM.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { exit, logLine, onShutdownSignal } from "../runtime/env.ts";
import type { ChannelManagerLike } from "../mcp/tools.ts";

const USAGE =
  `Usage: skytale mcp [--http HOST:PORT] [--allow-host NAME]... [--allow-origin ORIGIN]...

Runs the Skytale MCP server: on stdio by default, or over Streamable HTTP at
http://HOST:PORT/mcp with --http. Requests whose Host (or Origin) is not a
loopback name or the bound address are refused (DNS-rebinding protection);
--allow-host / --allow-origin add more (repeatable).

Environment: SKYTALE_IDENTITY (default mcp-agent), SKYTALE_RELAY (unset: the
embedded local relay), SKYTALE_API_KEY, SKYTALE_API_URL, SKYTALE_DATA_DIR
(default $SKYTALE_HOME), SKYTALE_HOME (default ~/.skytale: the embedded local
relay's log and its local.key), SKYTALE_LOCAL_PORT (default 5000).`;

/** Parsed `skytale mcp` options. */
export interface McpCommandOptions {
  /** `HOST:PORT` to serve Streamable HTTP on, or undefined for stdio. */
  http?: { host: string; port: number };
  /** Extra host names accepted in the `Host` header. */
  allowHosts: string[];
  /** Extra origins accepted in the `Origin` header. */
  allowOrigins: string[];
  /** Whether `--help` was given. */
  help: boolean;
}

/**
 * Parses `HOST:PORT` (IPv6 hosts in brackets: `[::1]:3000`).
 *
 * @param value The text after `--http`.
 * @returns The host and port.
 * @throws {UsageError} If it is not `HOST:PORT`.
 */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    throw new UsageError(
      `Invalid --http address "${value}": use HOST:PORT, e.g. 127.0.0.1:3000`,
    );
  }
  return { host: m[1]!, port };
}

/**
 * Parses the arguments of `skytale mcp`.
 *
 * @param args The arguments after `mcp`.
 * @returns The options.
 * @throws {UsageError} On an unknown option or a missing value.
 */
export function parseMcpArgs(args: string[]): McpCommandOptions {
  const out: McpCommandOptions = { allowHosts: [], allowOrigins: [], help: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith("--") && eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) {
        throw new UsageError(`Option "${name}" needs a value\n${USAGE}`);
      }
      return v;
    };
    switch (name) {
      case "--http":
        out.http = parseHostPort(value());
        break;
      case "--allow-host":
        out.allowHosts.push(value());
        break;
      case "--allow-origin":
        out.allowOrigins.push(value());
        break;
      case "-h":
      case "--help":
        out.help = true;
        break;
      default:
        throw new UsageError(`Unknown option "${arg}" for "skytale mcp"\n${USAGE}`);
    }
  }
  return out;
}

/** How long shutdown may take before the process exits anyway. */
const SHUTDOWN_MS = 10_000;

/**
 * Runs `skytale mcp`. Once the server has started, this ends the process when
 * it stops (after closing the manager), so it resolves only for `--help`.
 *
 * @param args The arguments after `mcp` (none for stdio).
 * @returns The exit code.
 * @throws {UsageError} On bad arguments.
 */
export async function mcpCommand(args: string[]): Promise<number> {
  const opts = parseMcpArgs(args);
  if (opts.help) {
    logLine(USAGE);
    return 0;
  }
  const { SkytaleChannelManager } = await import("../channel/manager.ts");
  const manager: ChannelManagerLike & { close(): Promise<void> } = new SkytaleChannelManager();

  let stopServing: () => Promise<void>;
  let stopped: Promise<void>;
  if (opts.http) {
    const { serveHttp } = await import("../mcp/http.ts");
    const loopback = ["localhost", "127.0.0.1", "[::1]"];
    const bare = opts.http.host.replace(/^\[(.*)\]$/, "$1");
    const own = ["0.0.0.0", "::"].includes(bare) ? [] : [opts.http.host];
    const http = await serveHttp(manager, {
      host: opts.http.host,
      port: opts.http.port,
      allowedHosts: [...loopback, ...own, ...opts.allowHosts],
      ...(opts.allowOrigins.length > 0 ? { allowedOrigins: opts.allowOrigins } : {}),
    });
    logLine(`skytale mcp: identity "${manager.identity}", listening on ${http.url}`);
    stopServing = () => http.close();
    stopped = new Promise<void>(() => {});
  } else {
    const { serveStdio } = await import("../mcp/stdio.ts");
    const stdio = await serveStdio(manager);
    logLine(`skytale mcp: identity "${manager.identity}", serving MCP on stdio`);
    stopServing = () => stdio.close();
    stopped = stdio.done;
  }

  const reason = await Promise.race([
    stopped.then(() => "stdin closed"),
    new Promise<string>((resolve) => onShutdownSignal(resolve)),
  ]);
  logLine(`skytale mcp: shutting down (${reason})`);
  const force = setTimeout(() => {
    logLine(`skytale mcp: shutdown took over ${SHUTDOWN_MS / 1000} s; exiting anyway`);
    exit(1);
  }, SHUTDOWN_MS);
  let code = 0;
  try {
    await stopServing();
    await manager.close();
  } catch (e) {
    logLine(`skytale mcp: error during shutdown: ${e instanceof Error ? e.message : String(e)}`);
    code = 1;
  }
  clearTimeout(force);
  logLine("skytale mcp: stopped");
  exit(code);
}
