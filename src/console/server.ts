/**
 * The web console's server: static files only. It serves one HTML page, its
 * style sheet and the page's script (the SDK bundled for the browser, see
 * `_bundle.ts`); it holds no key, sees no message and talks to no relay. The
 * page, in the person's browser, does all the MLS work and connects to the
 * relay itself.
 *
 * Headers are strict: a Content-Security-Policy that allows scripts from this
 * origin only and WebSocket connections to the relay only (any `ws:`/`wss:`
 * relay an invite names when no relay was given), `nosniff`, no framing, no
 * referrer, no caching. Requests whose Host is not the exact origin the
 * console printed are refused, because the relay admits that origin only
 * (`--allow-origin`) and a page opened under another name could not connect.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { serve, type Server } from "../runtime/serve.ts";
import { buildPage } from "./_bundle.ts";
import { PAGE_CSS, pageHtml } from "./page_html.ts";

/** Options of {@linkcode startConsole}. */
export interface ConsoleOptions {
  /** The interface to listen on: a loopback address (default `127.0.0.1`). */
  hostname?: string;
  /** The port (default 0: a free one). */
  port?: number;
  /** The relay the page may connect to, `ws://` or `wss://`; unset: any an invite names. */
  relay?: string | undefined;
}

/** A running console. */
export interface ConsoleServer {
  /** The page's URL, e.g. `http://127.0.0.1:5080/`. */
  readonly url: string;
  /** Its origin, which the relay must allow: `--allow-origin http://127.0.0.1:5080`. */
  readonly origin: string;
  /** The Content-Security-Policy it sends with the page. */
  readonly csp: string;
  /** Stops serving (idempotent). */
  close(): Promise<void>;
  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * Checks a relay URL for the page: `ws://` or `wss://`, no path beyond `/`.
 *
 * @param relay The URL.
 * @returns Its origin, as a CSP source (`ws://host:port`).
 * @throws {ValidationError} `invalid_argument` when it is not one.
 */
export function relayOrigin(relay: string): string {
  let u: URL | undefined;
  try {
    u = new URL(relay);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== "ws:" && u.protocol !== "wss:") || u.username || u.password) {
    throw new ValidationError(
      "invalid_argument",
      `Relay "${relay}" is not a ws:// or wss:// URL`,
    );
  }
  return `${u.protocol}//${u.host}`;
}

/**
 * The page's Content-Security-Policy.
 *
 * @param relay The relay's origin, or `undefined` for any WebSocket relay.
 * @returns The header value.
 */
export function consoleCsp(relay: string | undefined): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `connect-src 'self' ${relay ?? "ws: wss:"}`,
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

function _type(path: string): string {
  if (path.endsWith(".js")) return "text/javascript; charset=utf-8";
  if (path.endsWith(".css")) return "text/css; charset=utf-8";
  return "text/html; charset=utf-8";
}

function _respond(status: number, body: Uint8Array | string, path: string, csp: string): Response {
  return new Response(typeof body === "string" ? body : body as Uint8Array<ArrayBuffer>, {
    status,
    headers: {
      "content-type": status === 200 ? _type(path) : "text/plain; charset=utf-8",
      "content-security-policy": csp,
      "x-content-type-options": "nosniff",
      "x-frame-options": "DENY",
      "referrer-policy": "no-referrer",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-origin",
      "cache-control": "no-store",
    },
  });
}

/**
 * Starts the console: builds the page's script, then serves it.
 *
 * @param options Where to listen and which relay the page may use.
 * @returns The running console.
 * @throws {ValidationError} `invalid_argument` for a host that is not loopback or a bad relay URL.
 */
export async function startConsole(options: ConsoleOptions = {}): Promise<ConsoleServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  if (!LOOPBACK.has(hostname)) {
    throw new ValidationError(
      "invalid_argument",
      `Host "${hostname}" is not a loopback address: the page needs a secure context ` +
        `(WebCrypto), which plain HTTP is only on 127.0.0.1, ::1 or localhost`,
    );
  }
  const relay = options.relay === undefined ? undefined : relayOrigin(options.relay);
  const csp = consoleCsp(relay);
  const files = await buildPage();
  files.set("/", new TextEncoder().encode(pageHtml(options.relay ?? "")));
  files.set("/page.css", new TextEncoder().encode(PAGE_CSS));
  let authority = "";
  const server: Server = await serve({
    hostname,
    port: options.port ?? 0,
    onRequest(req) {
      const url = new URL(req.url);
      if (req.headers.get("host")?.toLowerCase() !== authority) {
        return _respond(421, `Open this console at http://${authority}/\n`, "", csp);
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        return _respond(405, "Method not allowed\n", "", csp);
      }
      const body = files.get(url.pathname);
      if (!body) return _respond(404, "Not found\n", "", csp);
      return _respond(200, req.method === "HEAD" ? "" : body, url.pathname, csp);
    },
    onUpgrade: () => _respond(404, "Not found\n", "", csp),
    onSocket(conn) {
      conn.close(1008, "no WebSockets here");
      return { message() {}, close() {} };
    },
  });
  authority = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`;
  const origin = `http://${authority}`;
  return {
    url: `${origin}/`,
    origin,
    csp,
    close: () => server.close(),
    [Symbol.asyncDispose]: () => server.close(),
  };
}
