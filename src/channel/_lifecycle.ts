/**
 * A manager's life. Made: its options resolved into the shared {@linkcode Core}.
 * Started, on its first call: the MLS engines, the store (files
 * under the data dir unless one was given), this identity's key, the relay
 * connection (a relay URL, a cluster's list of them, or the user's embedded
 * local relay), and then every stored channel, pending commit and invite
 * brought back. What is heavy is loaded here by `import()`, not with the
 * module (docs/DECISIONS.md, "Cold start"). Closed: timers stopped, state
 * flushed, the relay and the store released.
 *
 * @module
 */
import { RelayError, StateError, ValidationError } from "../errors.ts";
import type { MlsEngine } from "../mls/engine.ts";
import { decodeIdentityKey, encodeIdentityKey, type IdentityKey, signWith } from "../identity.ts";
import { PROVE_CONTEXT } from "../relay/protocol.ts";
import type { ApiKeyTokens } from "../relay/auth_client.ts";
import type { RelayClient, RelayClientOptions } from "../relay/client.ts";
import { env, logLine } from "../runtime/env.ts";
import type { Store } from "../store/types.ts";
import {
  closedError,
  type Core,
  type Ctx,
  flushAll,
  type Host,
  loadLive,
  notify,
} from "./_live.ts";
import { AuditTrail } from "./_audit.ts";
import { ContextHub } from "../context/context.ts";
import { errorMessage } from "../_util.ts";
import { padding } from "./_send.ts";
import type { SkytaleOptions } from "./types.ts";
import { settlePending } from "./_commit.ts";
import { drainAll } from "./_delivery.ts";
import { subscribe } from "./_pipeline.ts";
import { Invites } from "./_invites.ts";
import { checkIdentity } from "../validate.ts";

const IDENTITY_KEY_BLOB = "identity.key";

/**
 * The shared state of a new manager, from its options (each falling back to
 * its environment variable); nothing starts yet.
 *
 * @throws {ValidationError} `invalid_argument` for a bad identity or padding.
 */
export function newCore(
  host: Host,
  options: SkytaleOptions,
): { core: Core; invites: Invites } {
  const identity = checkIdentity(options.identity ?? env("SKYTALE_IDENTITY") ?? "mcp-agent");
  const opts = { ...options, audit: options.audit ?? env("SKYTALE_AUDIT") === "1" };
  const pad = padding(options.padding);
  const context = (): Promise<Ctx> => {
    if (core.closed) return Promise.reject(closedError());
    core.ctx ??= start(core, invites);
    return core.ctx;
  };
  const core: Core = {
    identity,
    opts,
    pad,
    channels: new Map(),
    cover: { sent: 0, received: 0 },
    contexts: new ContextHub(host, {
      load: async (name) => (await context()).store.loadBlob(name),
      save: async (name, data) => (await context()).store.saveBlob(name, data),
    }),
    audit: new AuditTrail({ enabled: opts.audit, identity, context, host }),
    listeners: new Set(),
    arrivals: new Set(),
    membership: new Set(),
    host,
    closed: false,
    dataDir: options.dataDir ?? env("SKYTALE_DATA_DIR"),
    home: undefined,
    ctx: undefined,
    context,
    endpoint: () => opts.endpoint ?? env("SKYTALE_RELAY"),
    localPort: () => Number(env("SKYTALE_LOCAL_PORT") ?? 5000),
    relayName: () => relayName(core),
  };
  const invites = new Invites(core);
  return { core, invites };
}

/** The relay a manager talks to, as a user would name it in an error message. */
function relayName(core: Core): string {
  const endpoint = core.endpoint();
  return endpoint !== undefined
    ? `"${endpoint}"`
    : `"ws://127.0.0.1:${core.localPort()}" (the embedded local relay of SKYTALE_HOME "${
      core.home ?? env("SKYTALE_HOME") ?? "~/.skytale"
    }")`;
}

/**
 * Normalises a relay URL: `https://` becomes `wss://`, `http://` becomes `ws://`.
 *
 * @param url The URL as configured.
 * @returns A WebSocket URL.
 * @throws {ValidationError} `invalid_argument` if it is not a URL of one of those schemes.
 */
export function relayUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ValidationError("invalid_argument", `Relay URL "${url}" is not a URL`);
  }
  if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new ValidationError(
      "invalid_argument",
      `Relay URL "${url}" must start with ws://, wss://, http:// or https://`,
    );
  }
  return u.href;
}

/** Starts a manager: everything its calls need, with its stored channels and invites back. */
async function start(core: Core, invites: Invites): Promise<Ctx> {
  // The MLS engine and the relay client are loaded on first use, not with this module: an MCP
  // server answers `initialize` and `tools/list` without them (docs/DECISIONS.md, "Cold start").
  const endpoint = core.endpoint();
  const [{ MlsEngine }, { failoverConnector, RelayClient }, local] = await Promise.all([
    import("../mls/engine.ts"),
    import("../relay/client.ts"),
    endpoint === undefined ? import("../relay/local.ts") : undefined,
  ]);
  const { engine, engineFor } = await engines(MlsEngine, core.opts.suite);
  // Files, the home directory and `node:*` are loaded only for a manager that keeps its state
  // on disk or hosts the embedded relay, so the SDK also runs in a browser tab with a `store`.
  let home: string | undefined;
  if (!core.opts.store || endpoint === undefined) {
    home = core.home = (await import("../runtime/home.ts")).skytaleHome();
  }
  const store = core.opts.store ?? await fileStore(core.identity, core.dataDir ?? home!);
  await store.open?.();
  let relay: RelayClient | undefined;
  let release: (() => Promise<void>) | undefined;
  try {
    const key = await identityKey(core.identity, engine, store);
    // A comma-separated endpoint lists the relays of a cluster: connect to any, fail over.
    const urls = endpoint?.split(",").map((u) => relayUrl(u.trim()));
    const tokens = await apiKeyTokens(core, urls);
    const embedded = urls === undefined
      ? (local ?? await import("../relay/local.ts")).localRelay({
        port: core.localPort(),
        home: home!,
      })
      : undefined;
    release = embedded?.release;
    const relayOptions: RelayClientOptions = {
      ...(embedded
        ? { connect: embedded.connect, greet: embedded.greet }
        : { connect: failoverConnector(urls!) }),
      ...(tokens ? { token: () => tokens.token() } : {}),
      // The relay lets a connection use a channel only once it proves a member's key.
      prove: async (nonce: Uint8Array) => ({
        publicKey: key.publicKey,
        signature: await signWith(key, new Uint8Array([...PROVE_CONTEXT, ...nonce])),
      }),
    };
    relay = new RelayClient(relayOptions);
    const ctx: Ctx = {
      openRelay: () => new RelayClient(relayOptions),
      engine,
      engineFor,
      welcomeSuite: (w: Uint8Array) => MlsEngine.welcomeSuite(w),
      store,
      relay,
      ...(release ? { release } : {}),
      key,
    };
    await restore(core, ctx, invites);
    return ctx;
  } catch (e) {
    // A manager that failed to start keeps no reconnecting client and no lock on the identity.
    await relay?.close();
    await release?.();
    await store.close?.();
    throw e;
  }
}

/** The engine of the default suite, and one per other suite, made on first use. */
async function engines(
  Engine: typeof MlsEngine,
  suite: string | undefined,
): Promise<Pick<Ctx, "engine" | "engineFor">> {
  const engine = await Engine.create(suite ?? env("SKYTALE_CIPHERSUITE"));
  const made = new Map<string, Promise<MlsEngine>>([[engine.suite, Promise.resolve(engine)]]);
  const engineFor = (suite: string | undefined): Promise<MlsEngine> => {
    const name = suite ?? engine.suite;
    let e = made.get(name);
    if (!e) {
      e = Engine.create(name);
      e.catch(() => made.delete(name));
      made.set(name, e);
    }
    return e;
  };
  return { engine, engineFor };
}

/** Tokens from the API key, for an authenticated relay (not the embedded one: it needs none). */
async function apiKeyTokens(
  core: Core,
  urls: string[] | undefined,
): Promise<ApiKeyTokens | undefined> {
  const apiKey = core.opts.apiKey ?? env("SKYTALE_API_KEY");
  const apiUrl = core.opts.apiUrl ?? env("SKYTALE_API_URL");
  // The embedded local relay needs no API key: its connections prove the user's local.key.
  if (apiKey === undefined || urls === undefined) return undefined;
  const { ApiKeyTokens, tokenApiUrl } = await import("../relay/auth_client.ts");
  return new ApiKeyTokens({
    apiKey,
    apiUrls: apiUrl?.split(",").map((u) => u.trim()) ?? urls.map(tokenApiUrl),
  });
}

/** Brings back every stored channel, settles commits left in flight, and serves the invites. */
async function restore(core: Core, ctx: Ctx, invites: Invites): Promise<void> {
  for (const record of await ctx.store.loadChannels()) {
    const live = await loadLive(core, ctx, record);
    try {
      if (record.active) await subscribe(core, ctx, live);
    } catch (e) {
      if (!(e instanceof RelayError && e.code === "wrong_relay")) throw e;
      // The other channels still work; this one's calls say what is wrong.
      logLine(`skytale: ${e.message}`);
    }
  }
  // A commit in flight when the process stopped is settled before any other one is built.
  for (const live of core.channels.values()) settlePending(core, ctx, live);
  await invites.load(ctx);
  // Buffers restored from disk go to listeners registered before the first call.
  queueMicrotask(() => drainAll(core, ctx));
}

/** The default store: files under `dataDir/<identity>`. */
async function fileStore(identity: string, dataDir: string): Promise<Store> {
  const [{ FileStore }, { ensureDir, joinPath }] = await Promise.all([
    import("../store/file.ts"),
    import("../runtime/fs.ts"),
  ]);
  await ensureDir(dataDir);
  return new FileStore(joinPath(dataDir, identity));
}

/** This agent's identity key: made once, kept in its store (0600 in the file store). */
async function identityKey(
  identity: string,
  engine: MlsEngine,
  store: Store,
): Promise<IdentityKey> {
  const stored = await store.loadBlob(IDENTITY_KEY_BLOB);
  if (stored !== undefined) {
    const key = decodeIdentityKey(stored);
    if (key === undefined) {
      throw new StateError("state_corrupt", `Identity key of "${identity}" is unreadable`);
    }
    return key;
  }
  const key = await engine.newIdentityKey();
  await store.saveBlob(IDENTITY_KEY_BLOB, encodeIdentityKey(key));
  return key;
}

/** Closes a manager (see `SkytaleChannelManager.close`). */
export async function shutdown(core: Core, invites: Invites): Promise<void> {
  if (core.closed) return;
  core.closed = true;
  await invites.close();
  await core.contexts.close();
  await (await core.audit.loaded())?.close();
  const ctx = core.ctx;
  for (const live of core.channels.values()) {
    if (live.proposalTimer) clearTimeout(live.proposalTimer);
    clearTimeout(live.coverTimer);
    notify(live);
  }
  const c = await ctx?.catch(() => undefined);
  if (!c) return;
  // Written once, flushed, so the next start reads one record and an empty journal.
  await flushAll(core, c).catch((e) => logLine(`skytale: saving state failed: ${errorMessage(e)}`));
  await c.relay.close();
  // The last manager of the process stops the embedded relay it hosts, so the process can exit.
  await c.release?.();
  await c.store.close?.();
}
