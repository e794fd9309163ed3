/**
 * The first two doors of the MCP HTTP server (`http.ts`): `Host` and `Origin`
 * against the allowed lists (DNS-rebinding protection), and the bearer token,
 * compared in constant time; plus the JSON-RPC error responses they answer with.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { sha256, timingSafeEqual } from "../_util.ts";

/** The shortest accepted bearer token, in characters. */
export const MIN_TOKEN_LENGTH = 16;

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/;

/**
 * A JSON-RPC error response without an id.
 *
 * @param status The HTTP status.
 * @param code The JSON-RPC error code.
 * @param message The message.
 * @param headers More response headers.
 * @returns The response.
 */
export function jsonRpcError(
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

/**
 * The serialised origin of `scheme://host[:port]` (lower case, default port dropped).
 *
 * @param text The origin as written.
 * @returns It normalised, or undefined when it is not an origin.
 */
export function normalOrigin(text: string): string | undefined {
  try {
    const o = new URL(text).origin;
    return o === "null" ? undefined : o;
  } catch {
    return undefined;
  }
}

const digest = (s: string) => sha256(new TextEncoder().encode(s));

/**
 * Checks the bearer token of a request. The presented token is hashed first,
 * so the comparison takes the same time whatever its length.
 *
 * @param request The request.
 * @param want The SHA-256 of the server's token.
 * @returns A 401 response, or undefined when the token is right.
 */
export async function checkToken(
  request: Request,
  want: Uint8Array,
): Promise<Response | undefined> {
  const header = request.headers.get("authorization");
  const m = header === null ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  if (m && timingSafeEqual(await digest(m[1]!), want)) return undefined;
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
  if (origin !== null && !origins.includes(normalOrigin(origin) ?? "\0")) {
    return jsonRpcError(403, -32000, `Forbidden: Origin "${origin}" is not allowed`);
  }
  return undefined;
}

/**
 * The SHA-256 of the token to require, or undefined when serving without one is allowed.
 *
 * @param options `token` and `noAuth` as given to `serveHttp`.
 * @param host The address to bind.
 * @returns The digest, or undefined for `noAuth` on a loopback address.
 * @throws {ValidationError} `invalid_argument` for a missing or short token,
 *   both a token and `noAuth`, or `noAuth` on another address.
 */
export async function tokenDigest(
  options: { token?: string; noAuth?: boolean },
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
  return await digest(t);
}
