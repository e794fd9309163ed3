/**
 * `skytale relay`: run a relay until SIGINT or SIGTERM.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { env, logLine, onShutdownSignal } from "../runtime/env.ts";
import { skytaleHome } from "../runtime/home.ts";
import {
  ensureDir,
  joinPath,
  readFileIfExists,
  restrictTree,
  writeFileAtomic,
} from "../runtime/fs.ts";
import { recordProbes } from "../_probe.ts";
import { MemoryLog } from "../relay/log/memory.ts";
import { SqliteLog } from "../relay/log/sqlite.ts";
import type { RelayLog } from "../relay/log/types.ts";
import {
  DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS,
  DEFAULT_TOKEN_LIFETIME_SECONDS,
  DEFAULT_TOKEN_MAX_FAILURES,
  RelayAuth,
} from "../relay/auth.ts";
import {
  DEFAULT_LIMITS,
  jsonLog,
  type Relay,
  type RelayLimits,
  startRelay,
} from "../relay/server.ts";
import type { Retention } from "../relay/log/types.ts";
import { normalizeHost, normalizeOrigin } from "../relay/_doors.ts";
import { durationOption, intOption, parseCommandArgs, type ParsedCommandArgs } from "./_args.ts";

const USAGE = `Usage: skytale relay [options]

Options:
  --host HOST             interface to listen on (default 127.0.0.1)
  --port N                port (default 5000; 0 picks a free one)
  --local                 serve this user's embedded local relay, as an agent would host it:
                          127.0.0.1 only, port $SKYTALE_LOCAL_PORT (default 5000), log in
                          $SKYTALE_HOME/relay, every connection proves $SKYTALE_HOME/local.key
                          (with --port, --max-*, --publish-rate and --retention-* only)
  --data-dir DIR          where the log lives (default $SKYTALE_HOME/relay, i.e. ~/.skytale/relay)
  --store sqlite|memory|nats://HOST:PORT[,…]
                          log backend (default sqlite); nats:// shares one channel space
                          between every relay on the same NATS JetStream
  --nats-replicas N       replicas of each JetStream stream in a NATS cluster (1-5, default 1;
                          streams made earlier keep theirs)
  --max-frame-bytes N     largest accepted frame (default ${DEFAULT_LIMITS.maxFrameBytes})
  --max-channels-per-connection N
                          subscriptions one connection may hold (default ${DEFAULT_LIMITS.maxChannelsPerConnection})
  --publish-rate N        publishes and mailbox puts per second per connection
                          (default ${DEFAULT_LIMITS.publishPerSecond}; bursts up to twice that)
  --max-channels-per-org N
                          channels one organisation may create on this relay, counted
                          since it started (default ${DEFAULT_LIMITS.maxChannelsPerOrg}; --auth only)
  --max-connections-per-org N
                          connections one organisation may hold open at once
                          (default ${DEFAULT_LIMITS.maxConnectionsPerOrg}; --auth only)
  --org-publish-rate N    publishes and mailbox puts per second of one organisation, all its
                          connections together (default ${DEFAULT_LIMITS.orgPublishPerSecond}; bursts up to
                          twice that; --auth only)
  --retention-count N     keep the newest N seqs per channel (default: all)
  --retention-age DUR     delete entries older than DUR, e.g. 3600, 90m, 7d (default: never)
                          (retention never deletes commits; see docs/PROTOCOL.md)
  --mailbox-ttl DUR       longest time a mailbox item is kept (default 7d)
  --mailbox-lease DUR     how long a take holds items unacked before they are handed out
                          again (default 30s)
  --batch-ms N            deliver each channel's entries in batches every N ms (default 0:
                          at once), so delivery times do not mirror publish times
  --tls-cert FILE         serve wss:// and https:// with this PEM certificate chain
  --tls-key FILE          ... and this PEM private key
  --auth                  require a token in hello and serve POST /v1/tokens
                          (API keys: skytale keys create --org ORG, same --data-dir;
                          with --store nats://… keys and signing key live in NATS:
                          skytale keys create --org ORG --store nats://…)
  --token-lifetime SECS   lifetime of issued tokens (default ${DEFAULT_TOKEN_LIFETIME_SECONDS})
  --allow-origin ORIGIN   let web pages of ORIGIN (scheme://host[:port]) use the relay;
                          repeatable. Requests with any other Origin header get 403
                          (requests without one, i.e. non-browser clients, pass)
  --allow-host NAME       accept Host NAME (or NAME:PORT), e.g. behind a reverse proxy;
                          repeatable. Default on a loopback --host: loopback names with
                          the relay's port only; on another --host: any Host, unless
                          --allow-host is given (then only these and loopback names)
  --hello-timeout DUR     close connections that have not said hello by then (default 10s)
  --token-max-failures N  refused POST /v1/tokens per address (and per presented key) in a
                          window before the rest get 429 (default ${DEFAULT_TOKEN_MAX_FAILURES})
  --token-failure-window DUR
                          that window (default ${DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS}s)`;

const CMD = { command: "skytale relay", usage: USAGE };

const OPTIONS = {
  host: { type: "string" },
  port: { type: "string" },
  local: { type: "boolean" },
  "data-dir": { type: "string" },
  store: { type: "string" },
  "nats-replicas": { type: "string" },
  "max-frame-bytes": { type: "string" },
  "max-channels-per-connection": { type: "string" },
  "publish-rate": { type: "string" },
  "max-channels-per-org": { type: "string" },
  "max-connections-per-org": { type: "string" },
  "org-publish-rate": { type: "string" },
  "token-max-failures": { type: "string" },
  "token-failure-window": { type: "string" },
  "retention-count": { type: "string" },
  "retention-age": { type: "string" },
  "mailbox-ttl": { type: "string" },
  "mailbox-lease": { type: "string" },
  "batch-ms": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  auth: { type: "boolean" },
  "token-lifetime": { type: "string" },
  "allow-origin": { type: "string", multiple: true },
  "allow-host": { type: "string", multiple: true },
  "hello-timeout": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ParsedCommandArgs<typeof OPTIONS, false>["values"];

/** An integer option of `skytale relay`, by name. */
const _int = (name: keyof Values, v: string | undefined, min: number, max: number) =>
  intOption(CMD, `--${name}`, v, min, max);

/** A duration option of `skytale relay`, by name (at most ten years). */
const _duration = (name: keyof Values, v: string | undefined) =>
  durationOption(CMD, `--${name}`, v, 10 * 365 * 86400);

async function _readText(file: string): Promise<string> {
  const b = await readFileIfExists(file);
  if (!b) throw new UsageError(`Cannot read "${file}"\n${USAGE}`);
  return new TextDecoder().decode(b);
}

/** Each value of a repeatable option, normalised, or a usage error naming the bad one. */
function _each(
  values: string[] | undefined,
  normalize: (v: string) => string | undefined,
  problem: (v: string) => string,
): string[] {
  return (values ?? []).map((v) => {
    const n = normalize(v);
    if (n === undefined) throw new UsageError(`${problem(v)}\n${USAGE}`);
    return n;
  });
}

/** What every relay gets, local or not: limits, retention, the allowed origins and hosts. */
interface Common {
  port: number;
  limits: Partial<RelayLimits>;
  retention: Retention;
  mailboxLease: number | undefined;
  batchMs: number | undefined;
  allowOrigins: string[];
  allowHosts: string[];
}

/** The limits of the relay's options. */
function _limits(values: Values): Partial<RelayLimits> {
  const maxFrameBytes = _int("max-frame-bytes", values["max-frame-bytes"], 1024, 64 * 1024 * 1024);
  const maxChannels = _int(
    "max-channels-per-connection",
    values["max-channels-per-connection"],
    1,
    1_000_000,
  );
  const rate = _int("publish-rate", values["publish-rate"], 1, 10_000_000);
  const orgChannels = _int("max-channels-per-org", values["max-channels-per-org"], 1, 2 ** 52);
  const orgConns = _int(
    "max-connections-per-org",
    values["max-connections-per-org"],
    1,
    10_000_000,
  );
  const orgRate = _int("org-publish-rate", values["org-publish-rate"], 1, 100_000_000);
  const mailboxTtl = _duration("mailbox-ttl", values["mailbox-ttl"]);
  const helloTimeout = _duration("hello-timeout", values["hello-timeout"]);
  return {
    ...(maxFrameBytes !== undefined ? { maxFrameBytes } : {}),
    ...(maxChannels !== undefined ? { maxChannelsPerConnection: maxChannels } : {}),
    ...(rate !== undefined ? { publishPerSecond: rate, publishBurst: rate * 2 } : {}),
    ...(mailboxTtl !== undefined ? { maxMailboxTtlSeconds: mailboxTtl } : {}),
    ...(helloTimeout !== undefined ? { helloTimeoutMs: helloTimeout * 1000 } : {}),
    ...(orgChannels !== undefined ? { maxChannelsPerOrg: orgChannels } : {}),
    ...(orgConns !== undefined ? { maxConnectionsPerOrg: orgConns } : {}),
    ...(orgRate !== undefined
      ? { orgPublishPerSecond: orgRate, orgPublishBurst: orgRate * 2 }
      : {}),
  };
}

/** The options every relay takes, checked. */
function _common(values: Values): Common {
  const port = _int("port", values.port, 0, 65535) ??
    (values.local ? _int("port", env("SKYTALE_LOCAL_PORT"), 1, 65535) : undefined) ?? 5000;
  const limits = _limits(values);
  const retentionCount = _int("retention-count", values["retention-count"], 1, 2 ** 52);
  const retentionAge = _duration("retention-age", values["retention-age"]);
  const mailboxLease = _duration("mailbox-lease", values["mailbox-lease"]);
  const batchMs = _int("batch-ms", values["batch-ms"], 0, 60_000);
  const allowOrigins = _each(
    values["allow-origin"],
    normalizeOrigin,
    (o) =>
      `Option --allow-origin must be an origin like https://app.example or http://localhost:3000, got "${o}"`,
  );
  const allowHosts = _each(
    values["allow-host"],
    normalizeHost,
    (h) => `Option --allow-host must be a host name, optionally with :port, got "${h}"`,
  );
  const retention: Retention = {
    ...(retentionCount !== undefined ? { maxCount: retentionCount } : {}),
    ...(retentionAge !== undefined ? { maxAgeMs: retentionAge * 1000 } : {}),
  };
  return { port, limits, retention, mailboxLease, batchMs, allowOrigins, allowHosts };
}

/**
 * Runs a relay until a shutdown signal.
 *
 * @param args The arguments after `relay`.
 * @returns The exit code (0 after a clean shutdown).
 * @throws {UsageError} on unknown or malformed options.
 */
export async function relayCommand(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(CMD, args, OPTIONS);
  if (values.help) {
    logLine(USAGE);
    return 0;
  }
  const hostname = values.host ?? "127.0.0.1";
  const common = _common(values);
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) {
    throw new UsageError(`Options --tls-cert and --tls-key go together\n${USAGE}`);
  }
  const tls = values["tls-cert"] !== undefined && values["tls-key"] !== undefined
    ? { cert: await _readText(values["tls-cert"]), key: await _readText(values["tls-key"]) }
    : undefined;
  return values.local
    ? await _serveLocal(values, hostname, common)
    : await _serveOwn(values, hostname, common, tls);
}

/** `--local`: this user's embedded local relay, as an agent would host it. */
async function _serveLocal(values: Values, hostname: string, common: Common): Promise<number> {
  const other = [
    "data-dir",
    "store",
    "nats-replicas",
    "tls-cert",
    "tls-key",
    "auth",
    "token-lifetime",
  ]
    .filter((o) => values[o as keyof Values] !== undefined);
  if (other.length > 0 || hostname !== "127.0.0.1") {
    throw new UsageError(
      `Option --local serves 127.0.0.1 from $SKYTALE_HOME and cannot be combined with ${
        other.length > 0 ? other.map((o) => `--${o}`).join(", ") : `--host ${hostname}`
      }\n${USAGE}`,
    );
  }
  const { hostLocalRelay } = await import("../relay/local.ts");
  const home = skytaleHome();
  const { port, limits, retention } = common;
  const relay = await hostLocalRelay({ port, home, limits, retention });
  return await _serveUntilSignal(relay, {
    local: true,
    home,
    log: joinPath(home, "relay", "relay.db"),
    limits: relay.server.limits,
    retention,
  });
}

/** The log backend `--store` names: "sqlite", "memory" or a nats:// URL. */
function _store(values: Values): { store: string; nats: boolean; replicas: number | undefined } {
  const store = values.store ?? "sqlite";
  const nats = store.startsWith("nats://");
  if (store !== "sqlite" && store !== "memory" && !nats) {
    throw new UsageError(
      `Option --store must be "sqlite", "memory" or a nats:// URL, got "${store}"\n${USAGE}`,
    );
  }
  const replicas = _int("nats-replicas", values["nats-replicas"], 1, 5);
  if (replicas !== undefined && !nats) {
    throw new UsageError(`Option --nats-replicas needs --store nats://…\n${USAGE}`);
  }
  return { store, nats, replicas };
}

/** Opens the relay's log. */
async function _openLog(
  { store, nats, replicas }: ReturnType<typeof _store>,
  dataDir: string,
  retention: Retention,
): Promise<RelayLog> {
  if (store === "sqlite") return await SqliteLog.open(joinPath(dataDir, "relay.db"), { retention });
  if (!nats) return new MemoryLog({ retention });
  const { NatsLog } = await import("../relay/log/nats.ts");
  return await NatsLog.open(store, { retention, ...(replicas !== undefined ? { replicas } : {}) });
}

/** Opens the API keys and token issuer for `--auth` (in a cluster, kept in NATS). */
async function _openAuth(
  values: Values,
  { store, nats, replicas }: ReturnType<typeof _store>,
  dataDir: string,
): Promise<RelayAuth | undefined> {
  const tokenLifetime = _int("token-lifetime", values["token-lifetime"], 1, 30 * 86400);
  const tokenFailures = _int("token-max-failures", values["token-max-failures"], 1, 1_000_000);
  const tokenWindow = _duration("token-failure-window", values["token-failure-window"]);
  if (!values.auth) return undefined;
  // In a cluster the keys and the signing key live in NATS, shared by every relay.
  const shared = nats
    ? await (await import("../relay/auth_nats.ts")).NatsAuthStore.open(store, {
      ...(replicas !== undefined ? { replicas } : {}),
    })
    : undefined;
  return await RelayAuth.open({
    dataDir,
    ...(shared ? { keys: shared, signingKey: shared } : {}),
    ...(tokenLifetime !== undefined ? { tokenLifetimeSeconds: tokenLifetime } : {}),
    ...(tokenFailures !== undefined ? { maxTokenFailures: tokenFailures } : {}),
    ...(tokenWindow !== undefined ? { tokenFailureWindowSeconds: tokenWindow } : {}),
  });
}

/** A relay of its own log (sqlite, memory or NATS), with `--auth` if asked. */
async function _serveOwn(
  values: Values,
  hostname: string,
  common: Common,
  tls: { cert: string; key: string } | undefined,
): Promise<number> {
  const backend = _store(values);
  const dataDir = values["data-dir"] ?? joinPath(skytaleHome(), "relay");
  if (backend.store === "sqlite" || values.auth) {
    // Owner-only, whatever an older version or a copy left behind (the log, auth.db, the key).
    await ensureDir(dataDir);
    await restrictTree(dataDir, 0);
  }
  const { port, limits, retention, mailboxLease, batchMs, allowOrigins, allowHosts } = common;
  const log = await _openLog(backend, dataDir, retention);
  let auth: RelayAuth | undefined;
  try {
    auth = await _openAuth(values, backend, dataDir);
  } catch (e) {
    await log.close();
    throw e;
  }
  let relay;
  try {
    relay = await startRelay({
      hostname,
      port,
      log,
      limits,
      ...(mailboxLease !== undefined ? { mailboxLeaseMs: mailboxLease * 1000 } : {}),
      ...(batchMs !== undefined ? { batchMs } : {}),
      ...(tls ? { tls } : {}),
      allowOrigins,
      allowHosts,
      ...(auth
        ? {
          authenticate: (token: string | undefined) => auth.authenticate(token),
          onRequest: (req: Request, remote: string) => auth.handleRequest(req, remote),
          metrics: () => auth.metricsText(),
        }
        : {}),
    });
  } catch (e) {
    await auth?.close();
    throw e;
  }
  return await _serveUntilSignal(relay, {
    store: backend.nats ? "nats" : backend.store,
    ...(backend.store === "sqlite" ? { log: joinPath(dataDir, "relay.db") } : {}),
    auth: auth !== undefined,
    ...(auth ? { tokenLifetimeSeconds: auth.tokenLifetimeSeconds } : {}),
    tls: tls !== undefined,
    allowOrigins,
    allowHosts,
    limits: relay.server.limits,
    retention,
  }, () => auth?.close());
}

/** Logs that the relay listens, waits for SIGINT or SIGTERM, then stops it. */
async function _serveUntilSignal(
  relay: Relay,
  fields: Record<string, unknown>,
  cleanup?: () => Promise<void> | undefined,
): Promise<number> {
  const stopped = new Promise<string>((resolve) => onShutdownSignal(resolve));
  // Benchmarks only (bench/e2e.ts): stage timestamps of every publish, written out at the end.
  const probeFile = env("SKYTALE_BENCH_PROBES");
  const recording = probeFile ? recordProbes() : undefined;
  jsonLog("info", `skytale relay listening on ${relay.url}`, { url: relay.url, ...fields });
  const signal = await stopped;
  jsonLog("info", `skytale relay: ${signal}, shutting down`, { signal });
  await relay.close();
  await cleanup?.();
  if (probeFile && recording) {
    await writeFileAtomic(probeFile, new TextEncoder().encode(JSON.stringify(recording.stamps)));
  }
  jsonLog("info", "skytale relay: stopped");
  return 0;
}
