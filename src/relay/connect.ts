/**
 * Opening WebSockets to relays: one relay ({@linkcode connectWebSocket}), or
 * the first that answers of a cluster's ({@linkcode failoverConnector}), the
 * `connect` functions a `RelayClient` calls on every (re)connect.
 *
 * @module
 */
import { RelayError, ValidationError } from "../errors.ts";
import { clientWebSocket } from "../runtime/websocket.ts";

/**
 * Opens a WebSocket and waits until it is open.
 *
 * @param url The relay URL, e.g. `ws://127.0.0.1:5000`.
 * @param timeoutMs How long to wait, in ms.
 * @returns The open socket (binary type `arraybuffer`).
 * @throws {RelayError} `relay_unavailable` if it cannot connect in time.
 */
export async function connectWebSocket(url: string, timeoutMs = 5000): Promise<WebSocket> {
  const Impl = await clientWebSocket();
  return await new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new Impl(url);
    } catch (e) {
      reject(new RelayError("relay_unavailable", `Cannot connect to relay "${url}"`, { cause: e }));
      return;
    }
    ws.binaryType = "arraybuffer";
    const done = (err?: RelayError) => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      if (err) {
        try {
          ws.close();
        } catch { /* never opened */ }
        reject(err);
      } else resolve(ws);
    };
    const timer = setTimeout(
      () =>
        done(
          new RelayError(
            "relay_unavailable",
            `Timed out after ${timeoutMs} ms connecting to relay "${url}"`,
          ),
        ),
      timeoutMs,
    );
    ws.onopen = () => done();
    ws.onerror = () =>
      done(new RelayError("relay_unavailable", `Cannot connect to relay "${url}"`));
    ws.onclose = () =>
      done(new RelayError("relay_unavailable", `Relay "${url}" closed the connection`));
  });
}

/**
 * A `connect` function for {@linkcode RelayClient} over several relays that
 * share one channel space (a cluster): it connects to the last relay that
 * worked, and when that one cannot be reached, to the next in the list.
 *
 * @param urls WebSocket URLs of the relays.
 * @param timeoutMs How long one connection attempt may take, in ms.
 * @returns The connect function.
 * @throws {ValidationError} `invalid_argument` if `urls` is empty.
 */
export function failoverConnector(urls: string[], timeoutMs = 5000): () => Promise<WebSocket> {
  if (urls.length === 0) throw new ValidationError("invalid_argument", "No relay URL given");
  let current = 0;
  return async () => {
    let last: unknown;
    for (let n = 0; n < urls.length; n++) {
      const i = (current + n) % urls.length;
      try {
        const ws = await connectWebSocket(urls[i]!, timeoutMs);
        current = i;
        return ws;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  };
}

/**
 * Closes a socket and waits (at most a second) until it is closed.
 *
 * @param ws The socket.
 * @returns When it is closed, or the second has passed.
 */
export function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 1000);
    ws.addEventListener("close", () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      ws.close(1000);
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}
