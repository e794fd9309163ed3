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
import { isInitializeRequest, WebStandardStreamableHTTPServerTransport } from "./_sdk.ts";
import type { McpServer } from "./_sdk.ts";
import { buildMcpServer, type McpServerOptions } from "./server.ts";
import type { ChannelManagerLike } from "./tools.ts";

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
/** The shortest accepted bearer token, in characters. */
export const MIN_TOKEN_LENGTH = 16;

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

interface Session {
  transport: WebStandardStreamableHTTPServerTransport;
  server: McpServer;
  lastSeen: number;
}

const WILDCARD = new Set(["0.0.0.0", "::", "[::]", ""]);
const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;

function jsonRpcError(
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/**
 * Whether an address to bind is loopback only (`127.x.y.z`, `::1`, `localhost`).
 *
 * @param host The address, IPv6 with or without brackets.
 * @returns Whether only local processes can reach it.
 */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host.replace(/^\[(.*)\]$/, "$1"));
}

/** The serialised origin of `scheme://host[:port]` (lower case, default port dropped). */
function _origin(text: string): string | undefined {
  try {
    const o = new URL(text).origin;
    return o === "null" ? undefined : o;
  } catch {
    return undefined;
  }
}

async function _digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

/** Compares two secrets in time independent of where they differ (and of their lengths). */
async function _sameSecret(a: string, b: Uint8Array): Promise<boolean> {
  const x = await _digest(a);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * Checks the bearer token of a request.
 *
 * @returns A 401 response, or undefined when the token is right.
 */
async function _checkToken(request: Request, want: Uint8Array): Promise<Response | undefined> {
  const header = request.headers.get("authorization");
  const m = header === null ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (m && await _sameSecret(m[1]!, want)) return undefined;
  const challenge = header === null
    ? 'Bearer realm="skytale"'
    : 'Bearer realm="skytale", error="invalid_token", error_description="The bearer token is not this server\'s"';
  return jsonRpcError(
    401,
    -32001,
    header === null
      ? "Unauthorized: send the server's token as 'Authorization: Bearer <token>' (skytale mcp prints it at start)"
      : "Unauthorized: the bearer token is wrong or malformed",
    { "www-authenticate": challenge },
  );
}

function hostnameOf(hostHeader: string): string | undefined {
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return undefined;
  }
}

/**
 * Checks `Host` and `Origin` against the allowed lists (DNS-rebinding protection).
 *
 * @param request The request.
 * @param hosts Allowed host names, without port.
 * @param origins Allowed origins (`scheme://host[:port]`), compared exactly.
 * @returns A 403 response, or undefined when the request may proceed.
 */
export function checkHostAndOrigin(
  request: Request,
  hosts: readonly string[],
  origins: readonly string[],
): Response | undefined {
  const host = request.headers.get("host");
  const hostname = host === null ? undefined : hostnameOf(host);
  if (hostname === undefined || !hosts.includes(hostname)) {
    return jsonRpcError(403, -32000, `Forbidden: Host header "${host ?? ""}" is not allowed`);
  }
  const origin = request.headers.get("origin");
  if (origin !== null && !origins.includes(_origin(origin) ?? "\0")) {
    return jsonRpcError(403, -32000, `Forbidden: Origin "${origin}" is not allowed`);
  }
  return undefined;
}

function _positive(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(
      "invalid_argument",
      `${name} must be a whole number of at least 1, got ${n}`,
    );
  }
  return n;
}

/** The SHA-256 of the token to require, or undefined when serving without one is allowed. */
async function _tokenDigest(
  options: HttpServeOptions,
  host: string,
): Promise<Uint8Array | undefined> {
  if (options.noAuth) {
    if (options.token !== undefined) {
      throw new ValidationError("invalid_argument", "Give a token or noAuth, not both");
    }
    if (!isLoopbackHost(host)) {
      throw new ValidationError(
        "invalid_argument",
        `Serving without a token is refused on "${host}": only a loopback address may (127.0.0.1, ::1)`,
      );
    }
    return undefined;
  }
  const t = options.token;
  if (t === undefined) {
    throw new ValidationError(
      "invalid_argument",
      "The MCP HTTP server needs a token (or noAuth on a loopback address)",
    );
  }
  if (t.length < MIN_TOKEN_LENGTH || !/^[\x21-\x7e]+$/.test(t)) {
    throw new ValidationError(
      "invalid_argument",
      `The MCP HTTP token must be at least ${MIN_TOKEN_LENGTH} printable characters without spaces`,
    );
  }
  return await _digest(t);
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
  const want = await _tokenDigest(options, host);
  const maxSessions = _positive("maxSessions", options.maxSessions ?? DEFAULT_MAX_SESSIONS);
  const idleMs = _positive("sessionIdleMs", options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS);
  const loopback = ["localhost", "127.0.0.1", "[::1]"];
  const own = WILDCARD.has(bare) ? [] : [bracketed];
  const hosts = options.allowedHosts ?? [...loopback, ...own];
  const extraOrigins: string[] = [];
  for (const o of options.allowedOrigins ?? []) {
    const n = _origin(o);
    if (n === undefined) {
      throw new ValidationError(
        "invalid_argument",
        `Allowed origin "${o}" is not an origin: use scheme://host[:port], e.g. http://box.lan:8080`,
      );
    }
    extraOrigins.push(n);
  }
  let origins: string[] = []; // the server's own, once the port is known
  const sessions = new Map<string, Session>();
  let opening = 0; // initialize requests between the cap check and their session id

  async function closeSession(id: string): Promise<void> {
    const s = sessions.get(id);
    if (!s) return;
    sessions.delete(id);
    await s.server.close().catch(() => {});
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname !== path) {
      return new Response(`Not found: the MCP endpoint is ${path}\n`, { status: 404 });
    }
    const refused = checkHostAndOrigin(request, hosts, origins);
    if (refused) return refused;
    if (want !== undefined) {
      const unauthorized = await _checkToken(request, want);
      if (unauthorized) return unauthorized;
    }
    const id = request.headers.get("mcp-session-id");
    if (id !== null) {
      const s = sessions.get(id);
      if (s && Date.now() - s.lastSeen > idleMs) await closeSession(id);
      else if (s) {
        s.lastSeen = Date.now();
        return await s.transport.handleRequest(request);
      }
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
    const initializing = Array.isArray(body)
      ? body.some((m) => isInitializeRequest(m))
      : isInitializeRequest(body);
    if (!initializing) {
      return jsonRpcError(400, -32000, "Bad request: no Mcp-Session-Id header; initialize first");
    }
    if (sessions.size + opening >= maxSessions) {
      logLine(`skytale mcp: refused a new session: ${sessions.size} open, the limit`);
      return jsonRpcError(
        503,
        -32000,
        `Too many sessions: ${sessions.size} are open, the limit of ${maxSessions} (--max-sessions); ` +
          `close one (DELETE with its Mcp-Session-Id) or wait until idle ones expire`,
        { "retry-after": "60" },
      );
    }
    opening++;
    try {
      const server = buildMcpServer(manager, options);
      const transport: WebStandardStreamableHTTPServerTransport =
        new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: () => crypto.randomUUID(),
          onsessioninitialized: (sid) => {
            sessions.set(sid, { transport, server, lastSeen: Date.now() });
          },
          onsessionclosed: (sid) => closeSession(sid),
        });
      transport.onclose = () => {
        if (transport.sessionId !== undefined) void closeSession(transport.sessionId);
      };
      await server.connect(transport);
      return await transport.handleRequest(request, { parsedBody: body });
    } finally {
      opening--;
    }
  }

  function sweep(): void {
    const cutoff = Date.now() - idleMs;
    for (const [id, s] of sessions) {
      if (s.lastSeen < cutoff) {
        logLine(`skytale mcp: session ${id} idle for ${Math.round(idleMs / 1000)} s; closed`);
        void closeSession(id);
      }
    }
  }

  const http = await serveFetch(handle, {
    hostname: bare,
    port: options.port ?? 3000,
    onError: (e) =>
      logLine(`skytale mcp: HTTP handler failed: ${e instanceof Error ? e.stack : String(e)}`),
  });
  const urlHost = WILDCARD.has(bare) ? "127.0.0.1" : bracketed;
  const port = http.port;
  origins = [...new Set([...loopback, ...own, ...options.allowedHosts ?? []])]
    .flatMap((h) => [`http://${h}:${port}`, ...(port === 80 ? [`http://${h}`] : [])])
    .map((o) => _origin(o))
    .filter((o): o is string => o !== undefined)
    .concat(extraOrigins);
  const sweeper = setInterval(sweep, Math.max(200, Math.min(60_000, idleMs / 4)));
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
        await Promise.all([...sessions.keys()].map((id) => closeSession(id)));
        await http.close();
      })();
      return closing;
    },
  };
}
