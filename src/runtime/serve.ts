/**
 * HTTP + WebSocket serving on Bun (`Bun.serve`), and on Node and Deno
 * (`node:http` + the `ws` package), behind one small shape: plain requests go
 * to `onRequest` (Web `Request`/`Response`), WebSocket upgrades (any path)
 * first to `onUpgrade` (which may refuse them) and then to `onSocket`, which
 * returns the connection's handlers.
 *
 * Plain requests pass through `Bun.serve` on Bun and through the bridge in
 * `_fetch_bridge.ts` (`@hono/node-server`'s request listener) on Node and
 * Deno; on both, a request body over `maxBodyBytes` gets 413.
 *
 * The message size cap (`maxMessageBytes`) is enforced by the WebSocket
 * implementation from the frame header, before the message is buffered: Bun's
 * `maxPayloadLength` and `ws`'s `maxPayload` close the connection (1009).
 * Deno's own `Deno.upgradeWebSocket` has no such option (it buffers a message
 * of up to 64 MiB before any handler sees it), so on Deno the `ws` package
 * serves the sockets as on Node.
 *
 * @module
 */
import { runtime } from "./env.ts";
import { batchPerTurn } from "./_cork.ts";

/** The server side of one WebSocket connection. */
export interface WsConnection {
  /**
   * Sends one binary message; a no-op once the connection is closed.
   *
   * @param data The bytes.
   */
  send(data: Uint8Array): void;
  /**
   * Closes the connection.
   *
   * @param code The close code.
   * @param reason A short reason.
   */
  close(code?: number, reason?: string): void;
  /** Bytes queued for sending but not yet handed to the OS. */
  readonly bufferedAmount: number;
  /** The peer address, when known. */
  readonly remote: string;
}

/** What a connection does with its messages. */
export interface WsHandlers {
  /**
   * Called for each message; text messages arrive as their UTF-8 bytes.
   *
   * @param data The message.
   */
  message(data: Uint8Array): void;
  /** Called once when the connection is gone. */
  close(): void;
}

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** The interface to listen on, e.g. `127.0.0.1`. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** Answers plain HTTP requests; `remote` is the peer address, when known. */
  onRequest(req: Request, remote: string): Response | Promise<Response>;
  /** Called when a WebSocket connection opens; returns its handlers. */
  onSocket(conn: WsConnection): WsHandlers;
  /**
   * Checks a WebSocket upgrade request before it is accepted: a `Response`
   * refuses it (sent instead of `101`), `undefined` lets it through.
   */
  onUpgrade?(req: Request): Response | undefined;
  /** The largest WebSocket message the runtime accepts before closing the connection (1009). */
  maxMessageBytes?: number;
  /** Serve HTTPS and `wss://` with this PEM certificate chain and private key. */
  tls?: { cert: string; key: string };
  /**
   * The largest plain HTTP request body accepted, in bytes (default 4 MiB); larger ones get
   * 413 before `onRequest` sees them.
   */
  maxBodyBytes?: number;
}

/** A listening server. */
export interface Server {
  /** The actual port. */
  readonly port: number;
  /** Closes every connection and stops listening (idempotent). */
  close(): Promise<void>;
}

/** The error `serve` throws when the port is taken; `code` is `EADDRINUSE`. */
export class AddressInUseError extends Error {
  /** Always `EADDRINUSE`. */
  readonly code = "EADDRINUSE";
  /**
   * Creates it.
   *
   * @param message What was taken.
   * @param options The underlying cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AddressInUseError";
  }
}

function _isAddrInUse(e: unknown): boolean {
  const err = e as { code?: string; name?: string; message?: string } | undefined;
  return err?.code === "EADDRINUSE" || err?.name === "AddrInUse" ||
    /address.*in use|EADDRINUSE|port .* in use/i.test(err?.message ?? "");
}

const textEncoder = new TextEncoder();

function _toBytes(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (typeof data === "string") return textEncoder.encode(data);
  if (Array.isArray(data)) {
    // ws may deliver a fragmented message as an array of Buffers.
    const parts = data as Uint8Array[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  return new Uint8Array(0);
}

function _concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function _isUpgrade(headers: { get(name: string): string | null }): boolean {
  return (headers.get("upgrade") ?? "").toLowerCase() === "websocket";
}

/**
 * Serves HTTP and WebSocket on one port.
 *
 * @param opts Where to listen and what to do.
 * @returns The listening server.
 * @throws {AddressInUseError} if the port is taken.
 */
export async function serve(opts: ServeOptions): Promise<Server> {
  try {
    if (runtime === "bun") return await _serveBun(opts);
    // Deno too: `Deno.upgradeWebSocket` has no message size cap (it buffers up to 64 MiB per
    // message before any handler sees it); the `ws` package checks the length in the frame header.
    return await _serveNode(opts);
  } catch (e) {
    if (_isAddrInUse(e)) {
      throw new AddressInUseError(`Address "${opts.hostname}:${opts.port}" is already in use`, {
        cause: e,
      });
    }
    throw e;
  }
}

// ---------------------------------------------------------------- Bun

interface _BunWs {
  data: { h?: WsHandlers | undefined; conn?: WsConnection };
  send(d: Uint8Array): number;
  cork(f: () => void): void;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
  remoteAddress: string;
  readyState: number;
}
interface _BunServer {
  port: number;
  upgrade(req: Request, o: { data: unknown }): boolean;
  requestIP(req: Request): { address: string } | null;
  stop(force?: boolean): Promise<void> | void;
}
interface _BunNs {
  serve(o: {
    hostname: string;
    port: number;
    maxRequestBodySize?: number;
    tls?: { cert: string; key: string };
    fetch(req: Request, server: _BunServer): Response | Promise<Response> | undefined;
    websocket: {
      maxPayloadLength?: number;
      open(ws: _BunWs): void;
      message(ws: _BunWs, msg: string | Uint8Array): void;
      close(ws: _BunWs): void;
    };
  }): _BunServer;
}

/**
 * The connection of a `Bun.serve` socket. As on Node, the sends of one turn
 * after its first leave together (inside one `cork`): one system call, not
 * one each; the first is sent at once.
 */
function _bunConnection(ws: _BunWs): WsConnection {
  let inTurn = false;
  let queued: Uint8Array[] = [];
  const flush = () => {
    inTurn = false;
    const out = queued;
    if (out.length === 0) return;
    queued = [];
    if (ws.readyState !== 1) return;
    if (out.length === 1) ws.send(out[0]!);
    else ws.cork(() => out.forEach((d) => ws.send(d)));
  };
  return {
    send(data) {
      if (ws.readyState !== 1) return;
      if (inTurn) return void queued.push(data);
      inTurn = true;
      queueMicrotask(flush);
      ws.send(data);
    },
    close(code, reason) {
      flush(); // what was sent before the close goes first
      try {
        ws.close(code, reason);
      } catch { /* already closed */ }
    },
    get bufferedAmount() {
      let n = 0;
      for (const d of queued) n += d.length;
      return ws.getBufferedAmount() + n;
    },
    remote: ws.remoteAddress,
  };
}

async function _serveBun(opts: ServeOptions): Promise<Server> {
  const B = (globalThis as unknown as { Bun: _BunNs }).Bun;
  const { DEFAULT_MAX_BODY_BYTES } = await import("./_fetch_bridge.ts");
  const sockets = new Set<_BunWs>();
  const server = B.serve({
    hostname: opts.hostname,
    port: opts.port,
    maxRequestBodySize: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    fetch(req, srv) {
      if (_isUpgrade(req.headers)) {
        const refused = opts.onUpgrade?.(req);
        if (refused) return refused;
        if (srv.upgrade(req, { data: {} })) return undefined;
        return new Response("WebSocket upgrade failed", { status: 400 });
      }
      return opts.onRequest(req, srv.requestIP(req)?.address ?? "");
    },
    websocket: {
      ...(opts.maxMessageBytes ? { maxPayloadLength: opts.maxMessageBytes } : {}),
      open(ws) {
        sockets.add(ws);
        const conn = _bunConnection(ws);
        ws.data.conn = conn;
        ws.data.h = opts.onSocket(conn);
      },
      message(ws, msg) {
        ws.data.h?.message(_toBytes(msg));
      },
      close(ws) {
        sockets.delete(ws);
        const h = ws.data.h;
        ws.data.h = undefined;
        h?.close();
      },
    },
  });
  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    close() {
      closing ??= (async () => {
        for (const ws of sockets) {
          try {
            ws.close(1001, "server closing");
          } catch { /* gone */ }
        }
        await server.stop(true);
      })();
      return closing;
    },
  };
}

// ---------------------------------------------------------------- Node

type _Incoming = import("node:http").IncomingMessage;
type _WsServer = import("ws").WebSocketServer;
type _Ws = import("ws").WebSocket;

/** The `Request` of an upgrade (no body), for `onUpgrade` to check. */
function _upgradeRequest(opts: ServeOptions, req: _Incoming): Request {
  const host = req.headers.host ?? `${opts.hostname}:${opts.port}`;
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    for (const vv of Array.isArray(v) ? v : [v]) headers.append(k, vv);
  }
  // A Host that is no URL authority (a forged one) still makes a Request; checks read the header.
  const scheme = opts.tls ? "https" : "http";
  let url: URL;
  try {
    url = new URL(`${scheme}://${host}${req.url ?? "/"}`);
  } catch {
    url = new URL(`${scheme}://invalid.host${req.url ?? "/"}`);
  }
  return new Request(url, { method: req.method ?? "GET", headers });
}

/** Sends a refusal (`onUpgrade`'s response) on the raw socket of an upgrade, and closes it. */
async function _refuse(socket: import("node:stream").Duplex, refused: Response): Promise<void> {
  const body = new Uint8Array(await refused.arrayBuffer());
  const lines = [`HTTP/1.1 ${refused.status} ${refused.statusText || "Refused"}`];
  refused.headers.forEach((v, k) => lines.push(`${k}: ${v}`));
  lines.push(`content-length: ${body.length}`, "connection: close", "", "");
  socket.on("error", () => {});
  socket.end(_concat(textEncoder.encode(lines.join("\r\n")), body));
}

/**
 * Hands an accepted `ws` socket to `onSocket`. The sends of one turn of the
 * event loop after its first leave together (`_cork.ts`): one system call, not
 * one per message.
 */
function _adopt(opts: ServeOptions, ws: _Ws, req: _Incoming): void {
  const socket = req.socket;
  const send = batchPerTurn(() => socket, (data: Uint8Array) => ws.send(data));
  const conn: WsConnection = {
    send(data) {
      if (ws.readyState === ws.OPEN) send(data);
    },
    close(code, reason) {
      ws.close(code, reason);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    remote: req.socket.remoteAddress ?? "",
  };
  let h: WsHandlers | undefined = opts.onSocket(conn);
  ws.on("message", (data) => h?.message(_toBytes(data)));
  ws.on("error", () => {});
  ws.on("close", () => {
    const hh = h;
    h = undefined;
    hh?.close();
  });
}

async function _serveNode(opts: ServeOptions): Promise<Server> {
  const http = await import("node:http");
  const https = await import("node:https");
  const { WebSocketServer } = await import("ws");
  const { DEFAULT_MAX_BODY_BYTES, fetchListener } = await import("./_fetch_bridge.ts");
  const wss: _WsServer = new WebSocketServer({
    noServer: true,
    ...(opts.maxMessageBytes ? { maxPayload: opts.maxMessageBytes } : {}),
  });
  const listener = fetchListener(opts.onRequest, {
    hostname: `${opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname}:${opts.port}`,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
  });
  const handler = (req: _Incoming, res: import("node:http").ServerResponse) =>
    void listener(req, res);
  const server = opts.tls
    ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler)
    : http.createServer(handler);
  server.on("upgrade", async (req, socket, head) => {
    const refused = opts.onUpgrade?.(_upgradeRequest(opts, req));
    if (refused) return await _refuse(socket, refused);
    wss.handleUpgrade(req, socket, head, (ws) => _adopt(opts, ws, req));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
