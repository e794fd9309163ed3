/**
 * Serving the Skytale MCP server over Streamable HTTP, with stateful sessions
 * (one MCP server per session, all sharing one channel manager).
 *
 * Every request passes three doors, in this order:
 * 1. **Host and Origin** (DNS-rebinding protection): a `Host` that is not an
 *    allowed name, or an `Origin` that is not exactly one of the server's own
 *    origins (`http://127.0.0.1:PORT`, `http://localhost:PORT`, …) or an
 *    explicitly allowed one, gets 403. `localhost` on another port is foreign.
 * 2. **A bearer token**: `Authorization: Bearer <token>`, compared in constant
 *    time. Missing or wrong gets 401 with `WWW-Authenticate: Bearer
 *    realm="skytale"` (plus `error="invalid_token"` when one was presented),
 *    as RFC 6750 and the MCP authorization spec have it. Only a loopback bind
 *    may run without a token (`noAuth`).
 * 3. **Sessions are bounded**: at most `maxSessions` at once (an `initialize`
 *    over the cap gets 503 naming the limit), and a session with no request
 *    for `sessionIdleMs` is closed, after which its id answers 404 (the
 *    Streamable HTTP spec's "start a new session").
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { logLine } from "../runtime/env.ts";
import { serveFetch } from "../runtime/http.ts";
import { isInitializeRequest } from "./_sdk.ts";
import { buildMcpServer, type McpServerOptions } from "./server.ts";
import type { ChannelManagerLike } from "./tools.ts";
import {
  checkHostAndOrigin,
  checkToken,
  jsonRpcError,
  normalOrigin,
  tokenDigest,
} from "./_http_doors.ts";
import { SessionTable } from "./_http_sessions.ts";

export { checkHostAndOrigin, isLoopbackHost, MIN_TOKEN_LENGTH } from "./_http_doors.ts";

/** Options of {@linkcode serveHttp}. */
export interface HttpServeOptions extends McpServerOptions {
  /** The interface to bind (default `127.0.0.1`). */
  host?: string;
  /** The port; 0 picks a free one (default 3000). */
  port?: number;
  /** The URL path of the MCP endpoint (default `/mcp`). */
  path?: string;
  /**
   * Host names (without port) accepted in the `Host` header. Default: the loopback
   * names `localhost`, `127.0.0.1`, `[::1]`, plus `host` when it is a specific address.
   */
  allowedHosts?: string[];
  /**
   * Origins (`scheme://host[:port]`) accepted in the `Origin` header besides the
   * server's own (`http://` + each loopback name or the bound address + `:PORT`).
   * Compared exactly: `http://localhost:3000` does not admit `http://localhost:8080`.
   */
  allowedOrigins?: string[];
  /**
   * The bearer token every request must carry (`Authorization: Bearer <token>`).
   * Required unless `noAuth` is set.
   */
  token?: string;
  /**
   * Serve without a token. Refused unless `host` is a loopback address: any
   * local process (and user) can then call every tool.
   */
  noAuth?: boolean;
  /** The most sessions open at once (default {@linkcode DEFAULT_MAX_SESSIONS}). */
  maxSessions?: number;
  /**
   * A session with no request for this long is closed, in ms (default
   * {@linkcode DEFAULT_SESSION_IDLE_MS}).
   */
  sessionIdleMs?: number;
}

/** The default cap on open sessions. */
export const DEFAULT_MAX_SESSIONS = 256;
/** The default idle time after which a session is closed: 30 minutes. */
export const DEFAULT_SESSION_IDLE_MS = 30 * 60_000;
/** A server running over HTTP. */
export interface HttpServing {
  /** The MCP endpoint, e.g. `http://127.0.0.1:3000/mcp`. */
  readonly url: string;
  /** The bound port. */
  readonly port: number;
  /** The number of open sessions. */
  readonly sessions: number;
  /** Closes every session and stops listening; idempotent. Does not close the manager. */
  close(): Promise<void>;
}

const WILDCARD = new Set(["0.0.0.0", "::", "[::]", ""]);
const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"];

function _positive(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(
      "invalid_argument",
      `${name} must be a whole number of at least 1, got ${n}`,
    );
  }
  return n;
}

/** The extra allowed origins, normalised. */
function _extraOrigins(given: string[] | undefined): string[] {
  return (given ?? []).map((o) => {
    const n = normalOrigin(o);
    if (n === undefined) {
      throw new ValidationError(
        "invalid_argument",
        `Allowed origin "${o}" is not an origin: use scheme://host[:port], e.g. http://box.lan:8080`,
      );
    }
    return n;
  });
}

/** The server's own origins once its port is known: `http://` + each allowed name + `:PORT`. */
function _ownOrigins(names: string[], port: number): string[] {
  return [...new Set(names)]
    .flatMap((h) => [`http://${h}:${port}`, ...(port === 80 ? [`http://${h}`] : [])])
    .map((o) => normalOrigin(o))
    .filter((o): o is string => o !== undefined);
}

/**
 * The third door: a request with a session id goes to its session; one
 * without must be an initialize, which opens a session if the cap allows.
 */
async function _route(
  request: Request,
  sessions: SessionTable,
  server: Parameters<SessionTable["open"]>[0],
): Promise<Response> {
  const id = request.headers.get("mcp-session-id");
  if (id !== null) {
    const transport = await sessions.use(id);
    if (transport) return await transport.handleRequest(request);
    return jsonRpcError(404, -32001, "Session not found: initialize a new session");
  }
  if (request.method !== "POST") {
    return jsonRpcError(400, -32000, "Bad request: no Mcp-Session-Id header; initialize first");
  }
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return jsonRpcError(400, -32700, "Parse error: the body is not JSON");
  }
  // The SDK's transport validates every message against its schemas.
  const initializing = Array.isArray(body)
    ? body.some((m) => isInitializeRequest(m))
    : isInitializeRequest(body);
  if (!initializing) {
    return jsonRpcError(400, -32000, "Bad request: no Mcp-Session-Id header; initialize first");
  }
  if (sessions.full) {
    logLine(`skytale mcp: refused a new session: ${sessions.size} open, the limit`);
    return jsonRpcError(
      503,
      -32000,
      `Too many sessions: ${sessions.size} are open, the limit of ${sessions.max} (--max-sessions); ` +
        `close one (DELETE with its Mcp-Session-Id) or wait until idle ones expire`,
      { "retry-after": "60" },
    );
  }
  return await sessions.open(server, request, body);
}

/**
 * Serves the Skytale tools over Streamable HTTP.
 *
 * @example
 * ```ts ignore
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * import { serveHttp } from "@skytale/mcp/mcp";
 * const http = await serveHttp(new SkytaleChannelManager(), {
 *   host: "127.0.0.1",
 *   port: 3000,
 *   token: "a long random secret the clients send as a bearer token",
 * });
 * console.log(http.url); // http://127.0.0.1:3000/mcp
 * ```
 *
 * @param manager The channel manager every session's tools act on.
 * @param options Address, endpoint path, token, allowed hosts and origins, session
 *   limits, tool deadlines.
 * @returns The running server, once it listens.
 * @throws {ValidationError} `invalid_argument` without a token (and without
 *   `noAuth` on a loopback address), for a short token, or a bad limit or origin.
 */
export async function serveHttp(
  manager: ChannelManagerLike,
  options: HttpServeOptions = {},
): Promise<HttpServing> {
  const host = options.host ?? "127.0.0.1";
  const path = options.path ?? "/mcp";
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const bracketed = bare.includes(":") ? `[${bare}]` : bare;
  const want = await tokenDigest(options, host);
  const sessions = new SessionTable(
    _positive("maxSessions", options.maxSessions ?? DEFAULT_MAX_SESSIONS),
    _positive("sessionIdleMs", options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS),
  );
  const own = WILDCARD.has(bare) ? [] : [bracketed];
  const hosts = options.allowedHosts ?? [...LOOPBACK_NAMES, ...own];
  const extraOrigins = _extraOrigins(options.allowedOrigins);
  let origins: string[] = []; // the server's own, once the port is known

  const handle = async (request: Request): Promise<Response> => {
    if (new URL(request.url).pathname !== path) {
      return new Response(`Not found: the MCP endpoint is ${path}\n`, { status: 404 });
    }
    const refused = checkHostAndOrigin(request, hosts, origins) ??
      (want === undefined ? undefined : await checkToken(request, want));
    return refused ?? await _route(request, sessions, () => buildMcpServer(manager, options));
  };

  const http = await serveFetch(handle, {
    hostname: bare,
    port: options.port ?? 3000,
    onError: (e) =>
      logLine(`skytale mcp: HTTP handler failed: ${e instanceof Error ? e.stack : String(e)}`),
  });
  const urlHost = WILDCARD.has(bare) ? "127.0.0.1" : bracketed;
  origins = _ownOrigins([...LOOPBACK_NAMES, ...own, ...options.allowedHosts ?? []], http.port)
    .concat(extraOrigins);
  const sweeper = setInterval(
    () => sessions.sweep(),
    Math.max(200, Math.min(60_000, sessions.idleMs / 4)),
  );
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${http.port}${path}`,
    port: http.port,
    get sessions() {
      return sessions.size;
    },
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        await sessions.closeAll();
        await http.close();
      })();
      return closing;
    },
  };
}
