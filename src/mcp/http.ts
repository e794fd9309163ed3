/**
 * Serving the Skytale MCP server over Streamable HTTP, with stateful sessions
 * (one MCP server per session, all sharing one channel manager) and
 * DNS-rebinding protection: requests whose `Host` or `Origin` is not allowed
 * are refused with 403.
 *
 * @module
 */
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
   * Origins (`scheme://host[:port]`) accepted in the `Origin` header, when a request
   * carries one. Default: any origin whose host name is an allowed host.
   */
  allowedOrigins?: string[];
}

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
}

const WILDCARD = new Set(["0.0.0.0", "::", "[::]", ""]);

function jsonRpcError(status: number, code: number, message: string): Response {
  return new Response(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }), {
    status,
    headers: { "content-type": "application/json" },
  });
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
 * @param origins Explicitly allowed origins, or undefined to allow origins on allowed hosts.
 * @returns A 403 response, or undefined when the request may proceed.
 */
export function checkHostAndOrigin(
  request: Request,
  hosts: readonly string[],
  origins: readonly string[] | undefined,
): Response | undefined {
  const host = request.headers.get("host");
  const hostname = host === null ? undefined : hostnameOf(host);
  if (hostname === undefined || !hosts.includes(hostname)) {
    return jsonRpcError(403, -32000, `Forbidden: Host header "${host ?? ""}" is not allowed`);
  }
  const origin = request.headers.get("origin");
  if (origin !== null) {
    let ok: boolean;
    if (origins !== undefined) ok = origins.includes(origin);
    else {
      let oh: string | undefined;
      try {
        oh = new URL(origin).hostname;
      } catch {
        oh = undefined;
      }
      ok = oh !== undefined && hosts.includes(oh);
    }
    if (!ok) return jsonRpcError(403, -32000, `Forbidden: Origin "${origin}" is not allowed`);
  }
  return undefined;
}

/**
 * Serves the Skytale tools over Streamable HTTP.
 *
 * @example
 * ```ts ignore
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * import { serveHttp } from "@skytale/mcp/mcp";
 * const http = await serveHttp(new SkytaleChannelManager(), { host: "127.0.0.1", port: 3000 });
 * console.log(http.url); // http://127.0.0.1:3000/mcp
 * ```
 *
 * @param manager The channel manager every session's tools act on.
 * @param options Address, endpoint path, allowed hosts and origins, tool deadlines.
 * @returns The running server, once it listens.
 */
export async function serveHttp(
  manager: ChannelManagerLike,
  options: HttpServeOptions = {},
): Promise<HttpServing> {
  const host = options.host ?? "127.0.0.1";
  const path = options.path ?? "/mcp";
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const bracketed = bare.includes(":") ? `[${bare}]` : bare;
  const hosts = options.allowedHosts ?? [
    "localhost",
    "127.0.0.1",
    "[::1]",
    ...(WILDCARD.has(bare) ? [] : [bracketed]),
  ];
  const origins = options.allowedOrigins;
  const sessions = new Map<string, Session>();

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
    const id = request.headers.get("mcp-session-id");
    if (id !== null) {
      const s = sessions.get(id);
      if (!s) return jsonRpcError(404, -32001, "Session not found: initialize a new session");
      return await s.transport.handleRequest(request);
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
    const server = buildMcpServer(manager, options);
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (sid) => {
          sessions.set(sid, { transport, server });
        },
        onsessionclosed: (sid) => closeSession(sid),
      });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) void closeSession(transport.sessionId);
    };
    await server.connect(transport);
    return await transport.handleRequest(request, { parsedBody: body });
  }

  const http = await serveFetch(handle, {
    hostname: bare,
    port: options.port ?? 3000,
    onError: (e) =>
      logLine(`skytale mcp: HTTP handler failed: ${e instanceof Error ? e.stack : String(e)}`),
  });
  const urlHost = WILDCARD.has(bare) ? "127.0.0.1" : bracketed;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${http.port}${path}`,
    port: http.port,
    get sessions() {
      return sessions.size;
    },
    close() {
      closing ??= (async () => {
        await Promise.all([...sessions.keys()].map((id) => closeSession(id)));
        await http.close();
      })();
      return closing;
    },
  };
}
