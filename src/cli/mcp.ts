/**
 * `skytale mcp [--http HOST:PORT]`: runs the Skytale MCP server on stdio (the
 * default) or over Streamable HTTP, configured by the environment
 * (`SKYTALE_IDENTITY`, `SKYTALE_RELAY`, `SKYTALE_API_KEY`, `SKYTALE_API_URL`,
 * `SKYTALE_DATA_DIR`). It shuts down cleanly, state flushed and relay
 * connection closed, when stdin closes (stdio) or on SIGINT/SIGTERM.
 *
 * @module
 */
import { UsageError, ValidationError } from "../errors.ts";
import { env, exit, logLine, onShutdownSignal } from "../runtime/env.ts";
import { homeDir } from "../runtime/home.ts";
import { errorMessage, randomHex } from "../_util.ts";
import type { ChannelManagerLike } from "../mcp/tools.ts";
import { durationOption, intOption, parseCommandArgs } from "./_args.ts";
import { lazyManager } from "../mcp/_lazy_manager.ts";
import { checkIdentity } from "../validate.ts";

const USAGE = `Usage: skytale mcp [--claude-channel [--claude-channel-allow NAME|DID,...]]
       skytale mcp --http HOST:PORT [--token TOKEN | --no-auth] [--allow-host NAME]...
                    [--allow-origin ORIGIN]... [--max-sessions N] [--session-idle DUR]

Runs the Skytale MCP server: on stdio by default, or over Streamable HTTP at
http://HOST:PORT/mcp with --http.

Over HTTP every request must carry 'Authorization: Bearer <token>'. The token
is --token, else $SKYTALE_MCP_TOKEN, else the one in $SKYTALE_DATA_DIR/mcp-http.token
(made on first start, mode 0600); the server prints it to stderr at start.
--no-auth serves without a token, on a loopback address only.
Requests whose Host is not a loopback name or the bound address, or whose
Origin is not exactly http://<such a name>:PORT, are refused (DNS-rebinding
protection); --allow-host / --allow-origin add more (repeatable).
--max-sessions N caps open sessions (default 256); --session-idle DUR closes a
session after DUR without a request (default 30m; e.g. 90, 90s, 15m, 2h).

--claude-channel (stdio only; or SKYTALE_CLAUDE_CHANNEL=1) pushes every message
arriving on this agent's channels to Claude Code as a channel event
(notifications/claude/channel), framed as untrusted content from another agent;
--claude-channel-allow (or SKYTALE_CLAUDE_CHANNEL_ALLOW) pushes only messages of
these members, by name or did:key, comma-separated.

Environment: SKYTALE_IDENTITY (default mcp-agent), SKYTALE_RELAY (unset: the
embedded local relay), SKYTALE_API_KEY, SKYTALE_API_URL, SKYTALE_DATA_DIR
(default $SKYTALE_HOME), SKYTALE_HOME (default ~/.skytale: the embedded local
relay's log and its local.key), SKYTALE_LOCAL_PORT (default 5000),
SKYTALE_MCP_TOKEN.`;

/** The file under the data dir that keeps the generated MCP HTTP token. */
export const TOKEN_FILE = "mcp-http.token";

/** Parsed `skytale mcp` options. */
export interface McpCommandOptions {
  /** `HOST:PORT` to serve Streamable HTTP on, or undefined for stdio. */
  http?: { host: string; port: number };
  /** Extra host names accepted in the `Host` header. */
  allowHosts: string[];
  /** Extra origins accepted in the `Origin` header. */
  allowOrigins: string[];
  /** The bearer token HTTP clients must send (`--token`). */
  token?: string;
  /** Serve HTTP without a token (`--no-auth`; loopback binds only). */
  noAuth?: boolean;
  /** The most open HTTP sessions (`--max-sessions`). */
  maxSessions?: number;
  /** Seconds without a request after which an HTTP session is closed (`--session-idle`). */
  sessionIdleSeconds?: number;
  /** Push messages as Claude Code channel events (`--claude-channel`), stdio only. */
  claudeChannel?: boolean;
  /** Senders (names or dids) whose messages are pushed (`--claude-channel-allow`). */
  claudeChannelAllow?: string[];
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

const CMD = { command: "skytale mcp", usage: USAGE };

function _list(v: string): string[] {
  return v.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/**
 * Parses the arguments of `skytale mcp`.
 *
 * @param args The arguments after `mcp`.
 * @returns The options.
 * @throws {UsageError} On an unknown option or a missing value.
 */
export function parseMcpArgs(args: string[]): McpCommandOptions {
  const { values } = parseCommandArgs(CMD, args, {
    http: { type: "string" },
    "allow-host": { type: "string", multiple: true },
    "allow-origin": { type: "string", multiple: true },
    token: { type: "string" },
    "no-auth": { type: "boolean" },
    "max-sessions": { type: "string" },
    "session-idle": { type: "string" },
    "claude-channel": { type: "boolean" },
    "claude-channel-allow": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  const maxSessions = intOption(CMD, "--max-sessions", values["max-sessions"], 1, 1_000_000);
  const sessionIdleSeconds = durationOption(
    CMD,
    "--session-idle",
    values["session-idle"],
    365 * 86400,
  );
  const out: McpCommandOptions = {
    ...(values.http !== undefined ? { http: parseHostPort(values.http) } : {}),
    allowHosts: values["allow-host"] ?? [],
    allowOrigins: values["allow-origin"] ?? [],
    ...(values.token !== undefined ? { token: values.token } : {}),
    ...(values["no-auth"] ? { noAuth: true } : {}),
    ...(maxSessions !== undefined ? { maxSessions } : {}),
    ...(sessionIdleSeconds !== undefined ? { sessionIdleSeconds } : {}),
    help: values.help ?? false,
  };
  const allow = values["claude-channel-allow"];
  if (values["claude-channel"] || allow !== undefined) out.claudeChannel = true;
  if (allow !== undefined) out.claudeChannelAllow = _list(allow);
  if (out.noAuth && out.token !== undefined) {
    throw new UsageError(`Options --token and --no-auth exclude each other\n${USAGE}`);
  }
  const httpOnly = out.token !== undefined || out.noAuth || out.maxSessions !== undefined ||
    out.sessionIdleSeconds !== undefined;
  if (out.claudeChannel && out.http) {
    throw new UsageError(
      `Option --claude-channel is for the stdio server (Claude Code), not --http\n${USAGE}`,
    );
  }
  if (httpOnly && !out.http) {
    throw new UsageError(
      `Options --token, --no-auth, --max-sessions and --session-idle need --http\n${USAGE}`,
    );
  }
  return out;
}

/**
 * The MCP HTTP token: `--token`, else `SKYTALE_MCP_TOKEN`, else the one kept in
 * `<data dir>/mcp-http.token` (made, mode 0600 in a 0700 dir, when missing).
 *
 * @param given The `--token` value.
 * @returns The token and where it came from.
 */
async function _token(given: string | undefined): Promise<{ token: string; from: string }> {
  if (given !== undefined) return { token: given, from: "--token" };
  const fromEnv = env("SKYTALE_MCP_TOKEN");
  if (fromEnv !== undefined && fromEnv !== "") return { token: fromEnv, from: "SKYTALE_MCP_TOKEN" };
  // The file layer (node:fs, ~15 ms to load under Deno) only here: the stdio server never needs it.
  const { ensureDir, joinPath, readFileIfExists, writeFileAtomic } = await import(
    "../runtime/fs.ts"
  );
  const dir = env("SKYTALE_DATA_DIR") || joinPath(homeDir(), ".skytale");
  const file = joinPath(dir, TOKEN_FILE);
  const kept = await readFileIfExists(file);
  const text = kept ? new TextDecoder().decode(kept).trim() : "";
  if (text !== "") return { token: text, from: file };
  await ensureDir(dir);
  const token = "skt_mcp_" + randomHex(32);
  await writeFileAtomic(file, new TextEncoder().encode(token + "\n"));
  return { token, from: `${file} (new)` };
}

/** How long shutdown may take before the process exits anyway. */
const SHUTDOWN_MS = 10_000;

/** A server that is running, and how to stop it. */
interface Serving {
  /** Stops serving. */
  stop(): Promise<void>;
  /** Resolves when it stopped by itself (stdin closed). */
  stopped: Promise<void>;
}

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
  // The manager (and the MLS engine, stores and relay client behind it) loads on the first call
  // that needs it, not before `initialize` is answered.
  const identity = checkIdentity(env("SKYTALE_IDENTITY") ?? "mcp-agent");
  const manager = lazyManager<ManagerToServe>(identity, async () => {
    const { SkytaleChannelManager } = await import("../channel/manager.ts");
    return new SkytaleChannelManager({ identity });
  });
  const serving = opts.http
    ? await _serveHttp(manager, opts, opts.http)
    : await _serveStdio(manager, opts);
  const reason = await Promise.race([
    serving.stopped.then(() => "stdin closed"),
    new Promise<string>((resolve) => onShutdownSignal(resolve)),
  ]);
  logLine(`skytale mcp: shutting down (${reason})`);
  const force = setTimeout(() => {
    logLine(`skytale mcp: shutdown took over ${SHUTDOWN_MS / 1000} s; exiting anyway`);
    exit(1);
  }, SHUTDOWN_MS);
  let code = 0;
  try {
    await serving.stop();
    await manager.close();
  } catch (e) {
    logLine(`skytale mcp: error during shutdown: ${errorMessage(e)}`);
    code = 1;
  }
  clearTimeout(force);
  logLine("skytale mcp: stopped");
  exit(code);
}

type ManagerToServe = ChannelManagerLike & { close(): Promise<void> };

/** `--http`: Streamable HTTP with a bearer token (or `--no-auth` on loopback). */
async function _serveHttp(
  manager: ManagerToServe,
  opts: McpCommandOptions,
  at: { host: string; port: number },
): Promise<Serving> {
  const { serveHttp } = await import("../mcp/http.ts");
  const loopback = ["localhost", "127.0.0.1", "[::1]"];
  const bare = at.host.replace(/^\[(.*)\]$/, "$1");
  const own = ["0.0.0.0", "::"].includes(bare) ? [] : [at.host];
  const auth = opts.noAuth ? undefined : await _token(opts.token);
  let http;
  try {
    http = await serveHttp(manager, {
      host: at.host,
      port: at.port,
      allowedHosts: [...loopback, ...own, ...opts.allowHosts],
      allowedOrigins: opts.allowOrigins,
      ...(auth ? { token: auth.token } : { noAuth: true }),
      ...(opts.maxSessions !== undefined ? { maxSessions: opts.maxSessions } : {}),
      ...(opts.sessionIdleSeconds !== undefined
        ? { sessionIdleMs: opts.sessionIdleSeconds * 1000 }
        : {}),
    });
  } catch (e) {
    await manager.close();
    if (e instanceof ValidationError) {
      throw new UsageError(`${e.message}\n${USAGE}`, { cause: e });
    }
    throw e;
  }
  logLine(
    auth
      ? `skytale mcp: HTTP clients must send the header 'Authorization: Bearer ${auth.token}' ` +
        `(token from ${auth.from})`
      : "skytale mcp: WARNING: --no-auth: any local process can call every tool of this server",
  );
  logLine(`skytale mcp: identity "${manager.identity}", listening on ${http.url}`);
  return { stop: () => http.close(), stopped: new Promise<void>(() => {}) };
}

/** stdio, with Claude Code channel pushes if asked (flag or environment). */
async function _serveStdio(manager: ManagerToServe, opts: McpCommandOptions): Promise<Serving> {
  const { serveStdio } = await import("../mcp/stdio.ts");
  const allowEnv = env("SKYTALE_CLAUDE_CHANNEL_ALLOW");
  const allow = opts.claudeChannelAllow ?? (allowEnv ? _list(allowEnv) : undefined);
  const push = opts.claudeChannel || allow !== undefined ||
    ["1", "true", "yes"].includes(env("SKYTALE_CLAUDE_CHANNEL") ?? "");
  const stdio = await serveStdio(manager, push ? { claudeChannel: { allow } } : {});
  if (push) {
    logLine(
      `skytale mcp: pushing messages as Claude Code channel events${
        allow ? ` from ${allow.join(", ")} only` : ""
      }`,
    );
  }
  logLine(`skytale mcp: identity "${manager.identity}", serving MCP on stdio`);
  return { stop: () => stdio.close(), stopped: stdio.done };
}
