/**
 * The bare WebSocket baseline server, on the same `serve.ts` the relay uses:
 * `echo` sends every message back; `broadcast` sends it to every other
 * connection and answers the sender with a 16-byte ack (as the relay acks a
 * publish). Prints `listening on ws://127.0.0.1:PORT` on stderr.
 *
 * ```sh
 * deno run -A bench/_ws_server.ts echo|broadcast
 * ```
 *
 * @module
 */
import { cliArgs, exit, logLine, onShutdownSignal } from "../src/runtime/env.ts";
import { serve, type WsConnection } from "../src/runtime/serve.ts";

const mode = cliArgs()[0] === "broadcast" ? "broadcast" : "echo";
const conns = new Set<WsConnection>();
const ack = new Uint8Array(16);
const server = await serve({
  hostname: "127.0.0.1",
  port: 0,
  onRequest: () => new Response("ok"),
  onSocket(conn) {
    conns.add(conn);
    return {
      message(data) {
        if (mode === "echo") {
          conn.send(data);
          return;
        }
        for (const c of conns) if (c !== conn) c.send(data);
        conn.send(ack);
      },
      close() {
        conns.delete(conn);
      },
    };
  },
});
logLine(`listening on ws://127.0.0.1:${server.port}`);
onShutdownSignal(() => void server.close().finally(() => exit(0)));
