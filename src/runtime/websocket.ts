/**
 * The WebSocket client class to use on this runtime. Deno's built-in client
 * leaves Nagle's algorithm on and writes a frame's header and payload
 * separately, so every message over about 1 KiB waits for the peer's delayed
 * ACK (~40 ms on Linux loopback). On Deno the `ws` package (which sets
 * TCP_NODELAY) is used instead, corked per turn of the event loop (below);
 * Node and Bun use their global `WebSocket`.
 *
 * @module
 */
import { runtime } from "./env.ts";
import { batchPerTurn } from "./_cork.ts";

let cached: Promise<typeof WebSocket> | undefined;

/**
 * The WebSocket constructor for client connections (WHATWG-shaped: `onopen`,
 * `onmessage` with `ev.data`, `binaryType`, `send`, `close`, `readyState`).
 *
 * @returns The class.
 */
export function clientWebSocket(): Promise<typeof WebSocket> {
  cached ??= runtime === "deno"
    ? import("ws").then((m) => _corking(m.WebSocket) as unknown as typeof WebSocket)
    : Promise.resolve(globalThis.WebSocket);
  return cached;
}

type _WsClass = typeof import("ws").WebSocket;
type _Socket = import("node:stream").Duplex;

/**
 * `ws`'s client, with the messages sent in one turn of the event loop after
 * its first corked into one `writev` (`_cork.ts`; the TCP socket is taken from
 * the public `upgrade` event's response): a burst of publishes answered in one
 * read costs one system call, not one each.
 */
function _corking(Base: _WsClass): new (url: string | URL) => InstanceType<_WsClass> {
  return class CorkingWebSocket extends Base {
    constructor(url: string | URL) {
      super(url);
      let socket: _Socket | undefined;
      this.once("upgrade", (res) => (socket = res.socket));
      const send = this.send.bind(this);
      const batched = batchPerTurn(
        () => this.readyState === Base.OPEN ? socket : undefined,
        (a: Parameters<typeof send>) => send(...a),
      );
      this.send = ((...a: Parameters<typeof send>) => batched(a)) as typeof send;
    }
  };
}
