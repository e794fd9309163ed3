/**
 * The WebSocket client class to use on this runtime. Deno's built-in client
 * leaves Nagle's algorithm on and writes a frame's header and payload
 * separately, so every message over about 1 KiB waits for the peer's delayed
 * ACK (~40 ms on Linux loopback). On Deno the `ws` package (which sets
 * TCP_NODELAY) is used instead; Node and Bun use their global `WebSocket`.
 *
 * @module
 */
import { runtime } from "./env.ts";

let cached: Promise<typeof WebSocket> | undefined;

/**
 * The WebSocket constructor for client connections (WHATWG-shaped: `onopen`,
 * `onmessage` with `ev.data`, `binaryType`, `send`, `close`, `readyState`).
 *
 * @returns The class.
 */
export function clientWebSocket(): Promise<typeof WebSocket> {
  cached ??= runtime === "deno"
    ? import("ws").then((m) => m.WebSocket as unknown as typeof WebSocket)
    : Promise.resolve(globalThis.WebSocket);
  return cached;
}
