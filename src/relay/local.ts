/**
 * The embedded local relay (DESIGN invariant 7): connect to
 * `ws://127.0.0.1:<port>`; if nothing answers, host the relay in this process;
 * if another process won the race for the port, connect to it. The connector
 * runs again on every reconnect, so when the hosting process exits, a
 * surviving one takes over the same log.
 *
 * It is the user's alone: its log (`relay/relay.db`) and its secret
 * (`local.key`) live in one per-user place, `$SKYTALE_HOME` (default
 * `~/.skytale`), whichever agent's data dir hosts it; both ends of every
 * connection prove they hold the secret (`local_auth.ts`), so other users'
 * processes and web pages are refused, and a process that squats the port is
 * detected by the clients.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";
import { ensureDir, joinPath, restrictTree } from "../runtime/fs.ts";
import { connectWebSocket } from "./client.ts";
import { localAuthenticator, localGreeter, LocalSecret } from "./local_auth.ts";
import type { Retention } from "./log/types.ts";
import type { FrameOf } from "./protocol.ts";
import type { Relay, RelayLimits } from "./server.ts";

/** Options of {@linkcode localRelay}. */
export interface LocalRelayOptions {
  /** The loopback port shared by the user's processes (default in the SDK: 5000). */
  port: number;
  /** The user's Skytale home (`$SKYTALE_HOME`): holds `local.key` and the log in `relay/`. */
  home: string;
  /** The host to use (default `127.0.0.1`). */
  host?: string;
  /** How long one connection attempt may take, in ms (default 2000). */
  connectTimeoutMs?: number;
}

/** What a `RelayClient` needs to use the local relay: spread it into its options. */
export interface LocalRelayConnection {
  /** Opens a WebSocket to the local relay, hosting it first if nobody does. */
  connect: () => Promise<WebSocket>;
  /** The mutual proof of the user's secret on every (re)connect. */
  greet: (hello: (token: string) => Promise<FrameOf<"helloOk">>) => Promise<FrameOf<"helloOk">>;
  /**
   * Says this user is done with the relay (idempotent). When the last user in
   * this process releases it, the relay this process hosts on that port, if
   * any, stops, so the process can exit; another process that still uses it
   * reconnects and hosts it in turn.
   */
  release: () => Promise<void>;
}

const hosted = new Map<string, Promise<Relay>>();
/** `host:port` → how many `localRelay()` connections of this process have not been released. */
const users = new Map<string, number>();

/**
 * How a `RelayClient` uses, or hosts, the local relay.
 *
 * @param opts The port and the user's Skytale home.
 * @returns `connect` and `greet` for the client's options.
 */
export function localRelay(opts: LocalRelayOptions): LocalRelayConnection {
  const host = opts.host ?? "127.0.0.1";
  const url = `ws://${host}:${opts.port}`;
  const timeout = opts.connectTimeoutMs ?? 2000;
  const key = `${host}:${opts.port}`;
  users.set(key, (users.get(key) ?? 0) + 1);
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    const left = (users.get(key) ?? 1) - 1;
    if (left > 0) {
      users.set(key, left);
      return;
    }
    users.delete(key);
    const relay = hosted.get(key);
    hosted.delete(key);
    await relay?.then((r) => r.close(), () => {});
  };
  let loading: Promise<LocalSecret> | undefined;
  const secret = () =>
    loading ??= LocalSecret.load(opts.home).catch((e) => {
      loading = undefined;
      throw e;
    });
  const connect = async () => {
    try {
      return await connectWebSocket(url, timeout);
    } catch {
      if (!hosted.has(key)) {
        const starting = secret().then((s) =>
          hostLocalRelay({ host, port: opts.port, home: opts.home, secret: s })
        );
        hosted.set(key, starting);
        try {
          await starting;
        } catch (e) {
          hosted.delete(key);
          if ((e as { code?: string }).code !== "EADDRINUSE") throw e;
          // Another process took the port first: use its relay (the handshake checks it).
        }
      }
      return await connectWebSocket(url, timeout);
    }
  };
  return { connect, greet: localGreeter(secret, host, opts.port), release };
}

/** Options of {@linkcode hostLocalRelay}. */
export interface HostLocalRelayOptions {
  /** The loopback port. */
  port: number;
  /** The user's Skytale home. */
  home: string;
  /** The host (default `127.0.0.1`). */
  host?: string;
  /** The secret, if loaded already (else read or made from `<home>/local.key`). */
  secret?: LocalSecret;
  /** Relay limits. */
  limits?: Partial<RelayLimits>;
  /** Log retention. */
  retention?: Retention;
}

/**
 * Hosts the user's local relay: the log in `<home>/relay/relay.db`, every
 * connection authenticated with `<home>/local.key`; every file 0600, every
 * directory 0700.
 *
 * @param opts Port, home and limits.
 * @returns The running relay.
 * @throws {import("../runtime/serve.ts").AddressInUseError} if the port is taken (`code` `EADDRINUSE`).
 */
export async function hostLocalRelay(opts: HostLocalRelayOptions): Promise<Relay> {
  const host = opts.host ?? "127.0.0.1";
  await ensureDir(opts.home);
  const secret = opts.secret ?? await LocalSecret.load(opts.home);
  const dir = joinPath(opts.home, "relay");
  await ensureDir(dir);
  await restrictTree(dir, 0);
  const file = joinPath(dir, "relay.db");
  // The relay server and SQLite load only in the process that hosts: a client that finds the
  // relay running never pays for them (docs/DECISIONS.md, "Cold start").
  const [{ SqliteLog }, { startRelay }] = await Promise.all([
    import("./log/sqlite.ts"),
    import("./server.ts"),
  ]);
  const log = await SqliteLog.open(file, opts.retention ? { retention: opts.retention } : {});
  const relay = await startRelay({
    hostname: host,
    port: opts.port,
    log,
    authenticate: localAuthenticator(secret, opts.port),
    ...(opts.limits ? { limits: opts.limits } : {}),
  });
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
