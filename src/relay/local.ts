/**
 * The embedded local relay (DESIGN invariant 7): connect to
 * `ws://127.0.0.1:<port>`; if nothing answers, host the relay in this process
 * (SQLite log under the data dir); if another process won the race for the
 * port, connect to it. The connector runs again on every reconnect, so when
 * the hosting process exits, a surviving one takes over the same log.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";
import { joinPath } from "../runtime/fs.ts";
import { connectWebSocket } from "./client.ts";
import { SqliteLog } from "./log/sqlite.ts";
import { type Relay, startRelay } from "./server.ts";

/** Options of {@linkcode localConnector}. */
export interface LocalConnectorOptions {
  /** The loopback port shared by local processes (default in the SDK: 5000). */
  port: number;
  /** The Skytale data dir; the log lives at `<dataDir>/relay/relay.db`. */
  dataDir: string;
  /** The host to use (default `127.0.0.1`). */
  host?: string;
  /** How long one connection attempt may take, in ms (default 2000). */
  connectTimeoutMs?: number;
}

const hosted = new Map<string, Promise<Relay>>();

/**
 * A `connect` function for {@linkcode RelayClient} that uses, or hosts, the
 * local relay.
 *
 * @param opts The port and data dir.
 * @returns A function that resolves with an open WebSocket to the local relay.
 */
export function localConnector(opts: LocalConnectorOptions): () => Promise<WebSocket> {
  const host = opts.host ?? "127.0.0.1";
  const url = `ws://${host}:${opts.port}`;
  const timeout = opts.connectTimeoutMs ?? 2000;
  return async () => {
    try {
      return await connectWebSocket(url, timeout);
    } catch {
      const key = `${host}:${opts.port}`;
      if (!hosted.has(key)) {
        const starting = _host(host, opts.port, opts.dataDir);
        hosted.set(key, starting);
        try {
          await starting;
        } catch (e) {
          hosted.delete(key);
          if ((e as { code?: string }).code !== "EADDRINUSE") throw e;
          // Another process took the port first: use its relay.
        }
      }
      return await connectWebSocket(url, timeout);
    }
  };
}

async function _host(host: string, port: number, dataDir: string): Promise<Relay> {
  const file = joinPath(dataDir, "relay", "relay.db");
  const log = await SqliteLog.open(file);
  const relay = await startRelay({ hostname: host, port, log });
  logLine(`skytale: hosting the local relay on ${relay.url} (log ${file})`);
  return relay;
}

/**
 * Stops every relay this process hosts (for a clean exit and for tests). The
 * next connector call starts or finds a relay again.
 */
export async function closeLocalRelays(): Promise<void> {
  const all = [...hosted.values()];
  hosted.clear();
  await Promise.allSettled(all.map(async (r) => await (await r).close()));
}
