/**
 * {@linkcode SkytaleChannelManager}: end-to-end encrypted channels for one
 * identity. It keeps MLS group state per channel, orders commits through the
 * relay, decrypts in sequence order in the background and buffers messages
 * for `receive()`. Everything it has acknowledged survives a restart.
 *
 * @module
 */
import {
  CryptoError,
  InterruptedError,
  RelayError,
  SkytaleError,
  StateError,
  ValidationError,
} from "../errors.ts";
import type { MlsEngine } from "../mls/engine.ts";
import type { BoxPrivateKey } from "../seal.ts";
import {
  decodeIdentityKey,
  encodeIdentityKey,
  type IdentityKey,
  type Member,
  memberOf,
  signWith,
} from "../identity.ts";
import { PROVE_CONTEXT } from "../relay/protocol.ts";
import type { Group } from "../mls/engine.ts";
import type { ApiKeyTokens } from "../relay/auth_client.ts";
import type { RelayClient, RelayClientOptions } from "../relay/client.ts";
import type { EntryKind, LogEntry } from "../relay/log/types.ts";
import { newMailbox } from "../relay/mailbox.ts";
import { env, logLine } from "../runtime/env.ts";
import type { ChannelRecord, RememberedWelcome, Store, StoredMessage } from "../store/types.ts";
import { fromHex, MAX_MESSAGE_BYTES, parseChannelName } from "../validate.ts";
import { Mutex } from "./_mutex.ts";
import { probes, Stages } from "../_probe.ts";
import { decodeInviteToken, encodeInviteToken, type InviteRecord, open, seal } from "./invite.ts";
import { fromUtf8, openTagged, tagData, Tags, utf8 } from "./envelope.ts";
import { ContextHub, type SharedContext } from "../context/context.ts";
import type { AuditLog, SeenEvent } from "../audit/log.ts";
import type { AuditReport } from "../audit/chain.ts";

/** Options of {@linkcode SkytaleChannelManager}; each falls back to its environment variable. */
export interface SkytaleOptions {
  /** This agent's identity (`SKYTALE_IDENTITY`, default `mcp-agent`). */
  identity?: string;
  /** Relay URL, `ws(s)://` or `http(s)://` (`SKYTALE_RELAY`; unset = the embedded local relay). */
  endpoint?: string;
  /** API key `sk_live_…` for an authenticated relay (`SKYTALE_API_KEY`). */
  apiKey?: string;
  /** Token API URL (`SKYTALE_API_URL`, default: the relay's own origin). */
  apiUrl?: string;
  /**
   * Where this identity's MLS state lives (`SKYTALE_DATA_DIR`, default
   * `$SKYTALE_HOME`, i.e. `~/.skytale`). The embedded local relay does not
   * live here but in `$SKYTALE_HOME`, shared by every data dir of the user.
   */
  dataDir?: string;
  /** MLS ciphersuite name (default `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`). */
  suite?: string;
  /** A store to use instead of files under `dataDir` (e.g. a `MemoryStore`). */
  store?: Store;
  /**
   * Size buckets, in bytes, that every message is padded to (its whole MLS
   * encoding, as the relay stores it), so the relay and the network see only
   * the bucket, not the length. Above the largest bucket, sizes grow in
   * multiples of it. Default {@linkcode DEFAULT_PADDING_BUCKETS}; `false`
   * turns padding off (ts-mls' default then pads small messages to 256 bytes).
   */
  padding?: readonly number[] | false;
  /**
   * Cover traffic: while a channel is open, send a dummy message at random
   * intervals averaging `meanIntervalMs` (exponentially distributed), padded
   * like a short message and indistinguishable from one at the relay; members
   * drop it (counted in {@linkcode SkytaleChannelManager.metrics}). Off by default.
   */
  coverTraffic?: { meanIntervalMs: number };
  /**
   * Keep an encrypted, verifiable audit log of every channel (`src/audit/`):
   * joins, adds, removals, key rotations and message metadata, appended as a
   * hash chain to a relay mailbox that {@linkcode SkytaleChannelManager.exportAuditKey}'s
   * key opens. Default: `SKYTALE_AUDIT` is `1`; else off.
   */
  audit?: boolean;
}

/** The default size buckets of {@linkcode SkytaleOptions.padding}: 256 B to 32 KiB. */
export const DEFAULT_PADDING_BUCKETS: readonly number[] = [
  256,
  512,
  1024,
  2048,
  4096,
  8192,
  16384,
  32768,
];

/** The padded size of a message of `n` bytes: the smallest bucket at or above it. */
function bucketOf(buckets: readonly number[], n: number): number {
  for (const b of buckets) if (b >= n) return b;
  const top = buckets[buckets.length - 1]!;
  return Math.ceil(n / top) * top;
}

/** A received message. */
export interface Message {
  /** The sender's display name, taken from its MLS credential. */
  sender: string;
  /** The sender's stable id: the `did:key` its credential is bound to (see {@linkcode Member}). */
  senderId: string;
  /** The relay's per-channel sequence number. */
  seq: number;
  /** When the relay stored the message, ISO-8601. */
  time: string;
  /** The text. */
  text: string;
}

/** A channel this identity belongs to. */
export interface ChannelSummary {
  /** The channel name. */
  channel: string;
  /** Its MLS ciphersuite. */
  ciphersuite: string;
  /** The MLS epoch. */
  epoch: number;
  /** Member identities. */
  members: string[];
  /** The members with their dids and fingerprints. */
  roster: Member[];
  /** False once this identity was removed. */
  active: boolean;
}

/** Options of {@linkcode SkytaleChannelManager.receive}. */
export interface ReceiveOptions {
  /**
   * Seconds to wait when nothing is there yet (default 5, at most 300). The
   * call returns as soon as the first message arrives, not at the end.
   */
  timeout?: number | undefined;
  /** Gives the wait up: the call rejects with a `SkytaleError` coded `aborted`. */
  signal?: AbortSignal | undefined;
  /**
   * Reads from a cursor instead of consuming: every message with a greater seq
   * still known here (the recent history, last 100 per channel, and the
   * buffer), handed out or not. Nothing is consumed; pass the last seq seen
   * to read on.
   */
  afterSeq?: number | undefined;
  /** Returns what is buffered without consuming it. */
  peek?: boolean | undefined;
  /** The most messages to return (default: all); the rest stay buffered. */
  max?: number | undefined;
}

/** Options of {@linkcode SkytaleChannelManager.on} for `"message"` listeners. */
export interface MessageListenerOptions {
  /** Only this channel's messages (default: every channel). */
  channel?: string | undefined;
  /**
   * Only the messages this accepts are taken; the others stay buffered for
   * `receive()` and other consumers.
   */
  filter?: ((message: Message, channel: string) => boolean) | undefined;
}

/** A change in the list of this identity's channels. */
export interface MembershipChange {
  /** The channel. */
  channel: string;
  /** `joined` (created or joined), `left`, or `removed` by another member. */
  change: "joined" | "left" | "removed";
}

/** Data carried on a channel under a tag other than `chat` (used by the MCP transport). */
export interface TaggedData {
  /** The sender's identity, from its MLS credential. */
  sender: string;
  /** The sender's did. */
  senderId: string;
  /** The relay's per-channel sequence number. */
  seq: number;
  /** The body. */
  data: Uint8Array;
}

const INVITES_BLOB = "invites";
const IDENTITY_KEY_BLOB = "identity.key";
const INVITE_POLL_MS = 250;
/**
 * How long an invite that is used up or expired is still served, so that
 * requests arriving late (a joiner whose clock is behind, a race lost) get a
 * refusal instead of no answer; as long as the reply's mailbox TTL.
 */
const INVITE_GRACE_MS = 600_000;
const IDENTITY = /^[A-Za-z0-9._@+:-]{1,128}$/;
const COMMIT_RETRIES = 20;
const LEAVE_WAIT_MS = 10_000;
/** Own publish ids remembered until read back; older ones (never sequenced) are dropped. */
const MAX_SENT_IDS = 4096;
/**
 * Application generations reserved per journal write: a crash skips at most
 * this many (plus those of the pass under way), well inside the 200 a receiver
 * ratchets forward.
 */
const RESERVE_AHEAD = 64;
/** A channel's record is rewritten at most this often while messages flow… */
const SNAPSHOT_MS = 1000;
/** …or once this many entries were applied since the last write. */
const SNAPSHOT_ENTRIES = 512;
/** Welcomes of sequenced adds kept per channel for a repeated `addMember`. */
const MAX_WELCOMES = 16;
const WAIT_MS = 30_000;
/** Messages kept per channel as recent history (`receive({ afterSeq })`, `history()`). */
const RECENT = 100;
/** The longest `receive()` wait, in seconds. */
const MAX_RECEIVE_SECONDS = 300;

interface _Listener {
  channel: string | undefined;
  filter: ((m: Message, channel: string) => boolean) | undefined;
  fn: (m: Message, channel: string) => void;
}

interface Live {
  record: ChannelRecord;
  /** The engine of the channel's ciphersuite. */
  engine: MlsEngine;
  group: Group;
  mutex: Mutex;
  commitMutex: Mutex;
  waiters: Set<() => void>;
  taps: Map<string, Set<(d: TaggedData) => void>>;
  /** Plaintexts waiting to be encrypted by the next `#seal` pass. */
  outbox: _Outgoing[];
  proposalTimer?: ReturnType<typeof setTimeout> | undefined;
  /** The key update that a channel recovered from its backup makes before sending. */
  rekey?: Promise<unknown> | undefined;
  /** Generations below `gen` at `epoch` are journaled as possibly used by this member. */
  reserved: { epoch: number; gen: number } | undefined;
  /** Chat messages up to this seq were handed to the application… */
  delivered: number;
  /** …but for these, still in the buffer. */
  held: Set<number>;
  /** The last RECENT chat messages that arrived, handed out or not. */
  recent: StoredMessage[];
  /** Set by `leave()`: the removal it brings about is reported as `left`, not `removed`. */
  leaving?: boolean;
  /** Entries up to this seq were handed to tag handlers. */
  tapped: number;
  /** Publish ids of this process's own entries not read back yet. */
  ownIds: Set<string>;
  /** The 8-byte prefix of this member's publish ids in this channel. */
  ownTag: Uint8Array;
  /** Entries applied since the record was last written, and when that was. */
  dirty: number;
  savedAt: number;
  snapshotTimer?: ReturnType<typeof setTimeout> | undefined;
  coverTimer?: ReturnType<typeof setTimeout> | undefined;
  /** Audit events of the burst being applied (`audit: true`). */
  audit?: SeenEvent[];
}

interface _Sealed {
  id: Uint8Array;
  epoch: number;
  payload: Uint8Array;
}

interface _Outgoing {
  plaintext: Uint8Array;
  /** The MLS authenticated data: the layer's tag (empty for chat). */
  aad: Uint8Array;
  resolve: (s: _Sealed) => void;
  reject: (e: unknown) => void;
}

/** The answer to one join request, and how far it got. */
interface _Answer {
  sealed: Uint8Array;
  sent: boolean;
  saved: boolean;
}

interface Ctx {
  /** The engine of the default suite (`suite` option, `SKYTALE_CIPHERSUITE`). */
  engine: MlsEngine;
  /** An engine per ciphersuite, made on first use. */
  engineFor: (suite: string | undefined) => Promise<MlsEngine>;
  /** The suite of a Welcome (`MlsEngine.welcomeSuite`). */
  welcomeSuite: (welcome: Uint8Array) => string | undefined;
  key: IdentityKey;
  store: Store;
  relay: RelayClient;
  /** A second, short-lived connection to the same relay (audit reads release their leases on close). */
  openRelay: () => RelayClient;
  /** Releases the embedded local relay (`localRelay().release`), when it is the one used. */
  release?: () => Promise<void>;
}

/**
 * End-to-end encrypted channels for one identity. `await using` closes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 *
 * await using relay = await startTestRelay(); // leave `endpoint` out for the embedded relay
 * const agent = (identity: string) =>
 *   new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
 * await using alice = agent("alice");
 * await using bob = agent("bob");
 * await alice.create("acme/research/results");
 * const welcome = await alice.addMember("acme/research/results", await bob.keyPackage());
 * await bob.join("acme/research/results", welcome);
 * await alice.send("acme/research/results", "analysis complete");
 * const msgs = await bob.receive("acme/research/results", { timeout: 5 });
 * assert.deepEqual(msgs.map((m) => [m.sender, m.text]), [["alice", "analysis complete"]]);
 * ```
 */
export class SkytaleChannelManager {
  /** This agent's identity. */
  readonly identity: string;
  #opts: SkytaleOptions;
  /** `dataDir` or `SKYTALE_DATA_DIR`; unset: `SKYTALE_HOME`, resolved (on disk) by `#init`. */
  #dataDir: string | undefined;
  /** The user's Skytale home, once `#init` needed it (files or the embedded relay). */
  #home: string | undefined;
  #pad: { pad?: (length: number) => number };
  #cover = { sent: 0, received: 0 };
  #ctx: Promise<Ctx> | undefined;
  #channels = new Map<string, Live>();
  #closed = false;
  #invites: InviteRecord[] = [];
  #inviteTimer: ReturnType<typeof setTimeout> | undefined;
  #inviteMutex = new Mutex();
  /**
   * Invite id → reply address → the answer this process made to that join
   * request and how far it got, so a request handed out again while this
   * process runs (its reply, save or ack failed) resumes there instead of
   * answering twice. After a restart `addMember`'s remembered Welcomes and the
   * invite's `admitted` list give the same answer.
   */
  #answered = new Map<string, Map<string, _Answer>>();
  #listeners = new Set<_Listener>();
  #arrivals = new Set<(channel: string, messages: Message[]) => void>();
  #membership = new Set<(change: MembershipChange) => void>();
  /** Shared contexts (`src/context/`), fed from every channel's `ctx` layer. */
  #contexts = new ContextHub(this, {
    load: async (name) => (await this.#context()).store.loadBlob(name),
    save: async (name, data) => (await this.#context()).store.saveBlob(name, data),
  });

  /**
   * Creates a manager; nothing connects until the first call.
   *
   * @param options Identity, relay, credentials and data directory; each left out
   *   falls back to its environment variable.
   */
  constructor(options: SkytaleOptions = {}) {
    const identity = options.identity ?? env("SKYTALE_IDENTITY") ?? "mcp-agent";
    if (!IDENTITY.test(identity)) {
      throw new ValidationError(
        "invalid_argument",
        `Invalid identity "${identity}": use 1-128 letters, digits or . _ @ + : -`,
      );
    }
    this.identity = identity;
    this.#opts = { ...options, audit: options.audit ?? env("SKYTALE_AUDIT") === "1" };
    const buckets = options.padding === undefined ? DEFAULT_PADDING_BUCKETS : options.padding;
    if (buckets !== false) {
      if (
        buckets.length === 0 ||
        buckets.some((b, i) => !Number.isInteger(b) || b < 64 || (i > 0 && b <= buckets[i - 1]!))
      ) {
        throw new ValidationError(
          "invalid_argument",
          `Padding buckets must be increasing whole numbers of bytes of at least 64, got ${
            JSON.stringify(buckets).slice(0, 80)
          }`,
        );
      }
    }
    this.#pad = buckets === false ? {} : { pad: (n) => bucketOf(buckets, n) };
    this.#dataDir = options.dataDir ?? env("SKYTALE_DATA_DIR");
  }

  /** The relay URL this manager uses, or `undefined` for the embedded local relay. */
  get endpoint(): string | undefined {
    return this.#opts.endpoint ?? env("SKYTALE_RELAY");
  }

  /** The port of the embedded local relay (`SKYTALE_LOCAL_PORT`, default 5000). */
  get localPort(): number {
    return Number(env("SKYTALE_LOCAL_PORT") ?? 5000);
  }

  /** The relay this manager talks to, as a user would name it in an error message. */
  #relayName(): string {
    return this.endpoint !== undefined
      ? `"${this.endpoint}"`
      : `"ws://127.0.0.1:${this.localPort}" (the embedded local relay of SKYTALE_HOME "${
        this.#home ?? env("SKYTALE_HOME") ?? "~/.skytale"
      }")`;
  }

  /** The default store: files under `dataDir/<identity>`. */
  async #fileStore(dataDir: string): Promise<Store> {
    const [{ FileStore }, { ensureDir, joinPath }] = await Promise.all([
      import("../store/file.ts"),
      import("../runtime/fs.ts"),
    ]);
    await ensureDir(dataDir);
    return new FileStore(joinPath(dataDir, this.identity));
  }

  #context(): Promise<Ctx> {
    if (this.#closed) {
      return Promise.reject(new InterruptedError("closed", "This channel manager is closed"));
    }
    this.#ctx ??= this.#init();
    return this.#ctx;
  }

  async #init(): Promise<Ctx> {
    // The MLS engine and the relay client are loaded on first use, not with this module: an MCP
    // server answers `initialize` and `tools/list` without them (docs/DECISIONS.md, "Cold start").
    const endpoint = this.endpoint;
    const [{ MlsEngine }, { failoverConnector, RelayClient }, local] = await Promise.all([
      import("../mls/engine.ts"),
      import("../relay/client.ts"),
      endpoint === undefined ? import("../relay/local.ts") : undefined,
    ]);
    const defaultSuite = this.#opts.suite ?? env("SKYTALE_CIPHERSUITE");
    const engine = await MlsEngine.create(defaultSuite);
    const engines = new Map<string, Promise<MlsEngine>>([[engine.suite, Promise.resolve(engine)]]);
    const engineFor = (suite: string | undefined): Promise<MlsEngine> => {
      const name = suite ?? engine.suite;
      let e = engines.get(name);
      if (!e) {
        e = MlsEngine.create(name);
        e.catch(() => engines.delete(name));
        engines.set(name, e);
      }
      return e;
    };
    // Files, the home directory and `node:*` are loaded only for a manager that keeps its state
    // on disk or hosts the embedded relay, so the SDK also runs in a browser tab with a `store`.
    if (!this.#opts.store || endpoint === undefined) {
      this.#home = (await import("../runtime/home.ts")).skytaleHome();
    }
    const store = this.#opts.store ?? await this.#fileStore(this.#dataDir ?? this.#home!);
    await store.open?.();
    let relay: RelayClient | undefined;
    let release: (() => Promise<void>) | undefined;
    try {
      const key = await this.#identityKey(engine, store);
      // A comma-separated endpoint lists the relays of a cluster: connect to any, fail over.
      const urls = endpoint?.split(",").map((u) => relayUrl(u.trim()));
      const apiKey = this.#opts.apiKey ?? env("SKYTALE_API_KEY");
      const apiUrl = this.#opts.apiUrl ?? env("SKYTALE_API_URL");
      // The embedded local relay needs no API key: its connections prove the user's local.key.
      let tokens: ApiKeyTokens | undefined;
      if (apiKey !== undefined && urls !== undefined) {
        const { ApiKeyTokens, tokenApiUrl } = await import("../relay/auth_client.ts");
        tokens = new ApiKeyTokens({
          apiKey,
          apiUrls: apiUrl?.split(",").map((u) => u.trim()) ?? urls.map(tokenApiUrl),
        });
      }
      const embedded = urls === undefined
        ? (local ?? await import("../relay/local.ts")).localRelay({
          port: this.localPort,
          home: this.#home!,
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
      const ctx = {
        openRelay: () => new RelayClient(relayOptions),
        engine,
        engineFor,
        welcomeSuite: (w: Uint8Array) => MlsEngine.welcomeSuite(w),
        store,
        relay,
        ...(release ? { release } : {}),
        key,
      };
      for (const record of await store.loadChannels()) {
        const live = await this.#live(ctx, record);
        try {
          if (record.active) await this.#subscribe(ctx, live);
        } catch (e) {
          if (!(e instanceof RelayError && e.code === "wrong_relay")) throw e;
          // The other channels still work; this one's calls say what is wrong.
          logLine(`skytale: ${e.message}`);
        }
      }
      for (const live of this.#channels.values()) {
        const pending = live.record.pending;
        if (live.record.active && pending) {
          // A commit was in flight when the process stopped: settle it now, before any other
          // commit of this channel is built (a second one would replace it as pending, and this
          // one, read back, would then look like another member's).
          void live.commitMutex.run(() =>
            this.#publishPending(ctx, live, pending.id, pending.epoch, pending.commit)
          ).catch((e) => logLine(`skytale: could not settle a pending commit: ${message(e)}`));
        }
      }
      const invites = await store.loadBlob(INVITES_BLOB);
      if (invites) {
        const all = JSON.parse(new TextDecoder().decode(invites)) as InviteRecord[];
        // Invites from before mailbox take keys have a request mailbox nobody can take from.
        this.#invites = all.filter((i) => typeof i.takeKey === "string" && !!i.address);
        if (this.#invites.length < all.length) {
          logLine(
            `skytale: dropped ${
              all.length - this.#invites.length
            } invite(s) made by an older version`,
          );
        }
        for (const inv of this.#invites) {
          // Records from before admissions named their key package: such a reply address is
          // matched by no key package, so a request that reuses it is refused.
          inv.admitted = inv.admitted?.map((a) =>
            typeof a === "string" ? { reply: a, keyPackage: "" } : a
          );
        }
        this.#pollInvites(ctx);
      }
      // Buffers restored from disk go to listeners registered before the first call.
      queueMicrotask(() => this.#drainAll(ctx));
      return ctx;
    } catch (e) {
      // A manager that failed to start keeps no reconnecting client and no lock on the identity.
      await relay?.close();
      await release?.();
      await store.close?.();
      throw e;
    }
  }

  /** This agent's identity key: made once, kept in its store (0600 in the file store). */
  async #identityKey(engine: MlsEngine, store: Store): Promise<IdentityKey> {
    const stored = await store.loadBlob(IDENTITY_KEY_BLOB);
    if (stored !== undefined) {
      const key = decodeIdentityKey(stored);
      if (key === undefined) {
        throw new StateError("state_corrupt", `Identity key of "${this.identity}" is unreadable`);
      }
      return key;
    }
    const key = await engine.newIdentityKey();
    await store.saveBlob(IDENTITY_KEY_BLOB, encodeIdentityKey(key));
    return key;
  }

  /**
   * This agent's identity: its display name, its `did:key` (the stable id
   * other members see as `senderId`) and a fingerprint to compare out of band.
   *
   * @returns Name, did and fingerprint.
   */
  async whoami(): Promise<Member> {
    const ctx = await this.#context();
    return memberOf(this.identity, ctx.key.publicKey);
  }

  #boxKey: Promise<BoxPrivateKey> | undefined;

  /**
   * Opens an HPKE box sealed to this agent's did (see `src/seal.ts`), with
   * the X25519 form of its identity key. The key itself never leaves the
   * manager; this is the one use the MCP transport (`serveChannel`) makes of
   * it, so that a client's requests can be sealed to the server's did.
   *
   * @internal
   * @param box `enc || ciphertext`, as `sealBox` makes it for this agent's did.
   * @param info The HPKE `info` it was sealed with.
   * @param aad The data it was bound to.
   * @returns The plaintext.
   * @throws {CryptoError} `invalid_message` if it was not sealed to this did with this `info` and `aad`.
   */
  async openSealed(box: Uint8Array, info: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const ctx = await this.#context();
    const { identityBoxKey, openBox } = await import("../seal.ts");
    this.#boxKey ??= identityBoxKey(ctx.key);
    return await openBox(await this.#boxKey, box, info, aad);
  }

  /**
   * Checks members against the dids pinned for their names in this channel
   * and pins the new ones (known-hosts style: the first key seen for a name
   * is the one it keeps).
   *
   * @throws {SkytaleError} `identity_mismatch` naming both dids.
   */
  #pin(live: Live, members: Member[], commit = true): void {
    const pins = live.record.pins ?? {};
    for (const m of members) {
      const known = pins[m.name];
      if (known !== undefined && known !== m.did) {
        throw new CryptoError(
          "identity_mismatch",
          `"${m.name}" in "${live.record.channel}" is pinned to ${known}, not ${m.did}`,
        );
      }
    }
    if (!commit) return;
    for (const m of members) pins[m.name] = m.did;
    live.record.pins = pins;
  }

  /**
   * Brings a stored channel back: its record, plus what the journal adds since
   * the record was written (generations possibly used, messages handed out).
   */
  async #live(ctx: Ctx, record: ChannelRecord): Promise<Live> {
    const engine = await ctx.engineFor(record.suite);
    let group = engine.decodeGroup(record.group);
    let reserved = record.reserved;
    let delivered = record.delivered ?? 0;
    let held = record.held ?? [];
    let tapped = record.tapped ?? 0;
    for (const j of await ctx.store.loadJournal(record.channel)) {
      const r = j.reserve;
      if (r && typeof r.epoch === "number" && typeof r.gen === "number") {
        if (
          !reserved || r.epoch > reserved.epoch ||
          (r.epoch === reserved.epoch && r.gen > reserved.gen)
        ) {
          reserved = r;
        }
      }
      if (typeof j.delivered === "number") {
        delivered = Math.max(delivered, j.delivered);
        held = Array.isArray(j.held) ? j.held : [];
      }
      if (typeof j.tapped === "number") tapped = Math.max(tapped, j.tapped);
    }
    // Sends after the record was written may have used generations up to the reservation:
    // never use them again, and move to a new epoch before sending (as after a recovery from
    // `.bak`), so receivers never face a jump longer than they ratchet.
    if (
      reserved && reserved.epoch === engine.epoch(group) &&
      reserved.gen > engine.sendGeneration(group)
    ) {
      group = await engine.skipSendGeneration(group, reserved.gen);
      record.recovered = true;
    }
    const heldSet = new Set(held);
    record.buffer = record.buffer.filter((m) => m.seq > delivered || heldSet.has(m.seq));
    const live: Live = {
      record,
      engine,
      group,
      mutex: new Mutex(),
      commitMutex: new Mutex(),
      waiters: new Set(),
      taps: new Map(),
      outbox: [],
      reserved,
      delivered,
      held: heldSet,
      recent: record.buffer.slice(-RECENT),
      tapped,
      ownIds: new Set(record.sent ?? []),
      ownTag: await ownTag(ctx.key, record.channel),
      dirty: 0,
      savedAt: Date.now(),
    };
    live.taps.set(Tags.ctx, new Set([(d) => this.#contexts.receive(record.channel, d)]));
    this.#channels.set(record.channel, live);
    return live;
  }

  /**
   * Sends cover messages on a channel while it is open (see
   * {@linkcode SkytaleOptions.coverTraffic}): an empty chat body, which no
   * application ever sends, so members know to drop it.
   */
  #scheduleCover(live: Live): void {
    const mean = this.#opts.coverTraffic?.meanIntervalMs;
    if (mean === undefined || live.coverTimer !== undefined) return;
    const next = () => {
      const delay = -Math.log(1 - Math.random()) * mean; // exponential: a Poisson process
      live.coverTimer = setTimeout(async () => {
        live.coverTimer = undefined;
        if (this.#closed || !live.record.active) return;
        try {
          await this.sendTagged(live.record.channel, Tags.chat, new Uint8Array(0));
          this.#cover.sent++;
        } catch (e) {
          logLine(`skytale: cover message to "${live.record.channel}" failed: ${message(e)}`);
        }
        if (!this.#closed && live.record.active) next();
      }, Math.min(delay, 0x7fff_ffff));
      (live.coverTimer as { unref?: () => void }).unref?.();
    };
    next();
  }

  /**
   * Counters of this manager: cover messages sent, and received and dropped.
   *
   * @returns The counts since the manager started.
   */
  metrics(): { coverSent: number; coverReceived: number } {
    return { coverSent: this.#cover.sent, coverReceived: this.#cover.received };
  }

  async #subscribe(ctx: Ctx, live: Live): Promise<void> {
    this.#scheduleCover(live);
    const from = live.record.cursor > 0
      ? { seq: live.record.cursor + 1 }
      : { epoch: live.engine.epoch(live.group) };
    try {
      await ctx.relay.subscribeBatch(
        live.record.channel,
        from,
        (es) => this.#onEntries(ctx, live, es),
      );
    } catch (e) {
      if (!(e instanceof ValidationError && e.code === "unknown_channel")) throw e;
      // This identity has the channel, the relay does not: two relays (or two SKYTALE_HOMEs).
      throw new RelayError(
        "wrong_relay",
        `The relay ${this.#relayName()} has no channel "${live.record.channel}": it was created on another relay. ` +
          `Give this agent the same relay as the channel's other members (the same SKYTALE_RELAY, or for the ` +
          `embedded relay the same SKYTALE_HOME and SKYTALE_LOCAL_PORT)`,
        { cause: e },
      );
    }
  }

  /**
   * Persists group, cursor and buffer together. `durable: false` is for state
   * the relay can replay (applied entries): a power loss then only re-applies
   * them. Send ratchets and handed-out buffers are always flushed.
   */
  async #save(ctx: Ctx, live: Live, durable = true): Promise<void> {
    clearTimeout(live.snapshotTimer);
    live.snapshotTimer = undefined;
    live.record.group = live.engine.encodeGroup(live.group);
    // The record's own ratchet is exact; reservations beyond it live in the journal.
    const exact = {
      epoch: live.engine.epoch(live.group),
      gen: live.engine.sendGeneration(live.group),
    };
    live.record.reserved = exact;
    live.record.delivered = live.delivered;
    live.record.held = live.held.size > 0 ? [...live.held] : undefined;
    live.record.tapped = live.tapped;
    live.record.sent = undefined; // own ids are recognised by their prefix
    // A copy taken now: the write may yield before the store serialises it, and the group and
    // the cursor written must be those of one moment.
    const r = live.record;
    const copy: ChannelRecord = {
      ...r,
      buffer: r.buffer.slice(),
      welcomes: r.welcomes?.slice(),
      pins: r.pins ? { ...r.pins } : undefined,
    };
    await ctx.store.saveChannel(copy, { durable });
    live.dirty = 0;
    live.savedAt = Date.now();
    // A record on disk covers everything the journal says: start it afresh (and reserve anew).
    if (durable) {
      await ctx.store.clearJournal(live.record.channel);
      live.reserved = exact;
    }
  }

  /**
   * Writes the record after a burst only now and then (see SNAPSHOT_MS): the
   * relay replays whatever a crash loses, and the journal keeps what it cannot
   * (reserved generations, what was handed out).
   */
  async #snapshotLater(ctx: Ctx, live: Live, now: boolean): Promise<void> {
    if (now || live.dirty >= SNAPSHOT_ENTRIES || Date.now() - live.savedAt >= SNAPSHOT_MS) {
      await this.#save(ctx, live, false);
      return;
    }
    live.snapshotTimer ??= setTimeout(() => {
      live.snapshotTimer = undefined;
      if (this.#closed) return;
      void live.mutex.run(async () => {
        if (live.dirty > 0 && !this.#closed) await this.#save(ctx, live, false);
      }).catch((e) => logLine(`skytale: saving "${live.record.channel}" failed: ${message(e)}`));
    }, SNAPSHOT_MS);
  }

  #notify(live: Live): void {
    for (const w of [...live.waiters]) w();
  }

  /**
   * Waits (bounded) until `ready()` holds for one of the channels; false on
   * timeout. Rejects when the manager closes or `signal` fires.
   */
  #waitFor(
    lives: Live | Live[],
    ready: () => boolean,
    ms: number,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(aborted(signal));
    if (ready()) return Promise.resolve(true);
    const all = Array.isArray(lives) ? lives : [lives];
    return new Promise((resolve, reject) => {
      const end = (f: () => void) => {
        clearTimeout(timer);
        for (const l of all) l.waiters.delete(check);
        signal?.removeEventListener("abort", onAbort);
        f();
      };
      const check = () => {
        if (this.#closed) {
          end(() => reject(new InterruptedError("closed", "This channel manager is closed")));
        } else if (ready()) end(() => resolve(true));
      };
      const onAbort = () => end(() => reject(aborted(signal!)));
      const timer = setTimeout(() => end(() => resolve(false)), ms);
      for (const l of all) l.waiters.add(check);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Applies a burst of entries in seq order and persists once for the whole
   * burst: group, cursor and buffer go to disk together, before any of the
   * burst's messages is handed out (to `receive()` or to a tag handler).
   */
  async #onEntries(ctx: Ctx, live: Live, es: LogEntry[]): Promise<void> {
    const handOut: (() => void)[] = [];
    let fresh: StoredMessage[] = [];
    const wasActive = live.record.active;
    // Benchmarks only (src/_probe.ts): other members' entries, not this member's read back.
    const probed = probes.sink ? es.filter((e) => !live.ownIds.has(e.id.toHex())) : undefined;
    if (probed) { for (const e of probed) probes.sink?.(Stages.arrived, e.id); }
    await live.mutex.run(async () => {
      let advanced = false;
      const buffered = live.record.buffer.length;
      const epoch = live.engine.epoch(live.group);
      const pending = live.record.pending;
      const tapped = handOut.length;
      for (const e of es) {
        if (e.seq <= live.record.cursor || !live.record.active) continue;
        try {
          await this.#apply(ctx, live, e, e.id.toHex(), handOut);
        } catch (err) {
          logLine(
            `skytale: ${live.record.channel} seq ${e.seq}: skipped ${e.kind} (${message(err)})`,
          );
        }
        live.record.cursor = e.seq;
        live.dirty++;
        advanced = true;
      }
      if (!advanced) return;
      if (live.audit?.length) {
        // Queued durably before the cursor is written: a crash replays them, never loses them.
        const events = live.audit;
        live.audit = [];
        await (await this.#auditLog()).append(live.record.channel, events);
      }
      fresh = live.record.buffer.slice(buffered);
      if (fresh.length > 0) {
        live.recent.push(...fresh);
        if (live.recent.length > RECENT) live.recent.splice(0, live.recent.length - RECENT);
      }
      // Replayable from the relay, so no flush: a lost write only means re-applying. A new
      // epoch, a settled commit or a removal is written at once; messages only now and then.
      const changed = live.engine.epoch(live.group) !== epoch || live.record.pending !== pending ||
        !live.record.active;
      if (handOut.length > tapped && !changed) {
        // What tag handlers get is not handed to them again after a crash.
        live.tapped = live.record.cursor;
        await ctx.store.appendJournal(live.record.channel, { tapped: live.tapped });
      } else if (handOut.length > tapped) live.tapped = live.record.cursor;
      await this.#snapshotLater(ctx, live, changed);
      if (!live.record.active) await ctx.relay.unsubscribe(live.record.channel).catch(() => {});
    });
    if (probed) { for (const e of probed) probes.sink?.(Stages.buffered, e.id); }
    for (const f of handOut) f();
    if (fresh.length > 0) {
      const ms = fresh.map(publicMessage);
      for (const a of [...this.#arrivals]) {
        try {
          a(live.record.channel, ms);
        } catch (err) {
          logLine(`skytale: an "arrival" listener failed: ${message(err)}`);
        }
      }
      await this.#drain(ctx, live);
    }
    this.#notify(live);
    if (wasActive && !live.record.active && !live.leaving) {
      this.#emitMembership({ channel: live.record.channel, change: "removed" });
    }
  }

  async #apply(
    ctx: Ctx,
    live: Live,
    e: LogEntry,
    id: string,
    handOut: (() => void)[],
  ): Promise<void> {
    if (e.kind === "genesis") return; // the relay's copy of the public state at creation
    const pending = live.record.pending;
    if (pending && pending.id === id) {
      const before = this.#opts.audit ? live.engine.roster(live.group) : [];
      live.group = live.engine.decodeGroup(pending.group);
      this.#auditCommit(live, e, before, false);
      live.record.pending = undefined;
      this.#pin(live, live.engine.roster(live.group));
      if (pending.welcome) {
        const ws = live.record.welcomes ??= [];
        ws.push(pending.welcome);
        if (ws.length > MAX_WELCOMES) ws.splice(0, ws.length - MAX_WELCOMES);
      }
      live.record.recovered = undefined; // a new epoch: fresh sending keys
      return;
    }
    // Our own message read back: MLS does not decrypt a message for its sender.
    if (live.ownIds.delete(id)) {
      if (this.#opts.audit && e.kind === "application") this.#auditOwn(ctx, live, e, id);
      return;
    }
    const epoch = live.engine.epoch(live.group);
    if (e.kind === "commit" && e.epoch !== epoch) return; // before our join, or not applicable
    if (e.kind !== "commit" && e.epoch > epoch) {
      throw new CryptoError("invalid_message", `message from future epoch ${e.epoch}`);
    }
    let r: Awaited<ReturnType<MlsEngine["process"]>>;
    try {
      r = await live.engine.process(live.group, e.payload, e.kind);
      probes.sink?.(Stages.decrypted, e.id);
    } catch (err) {
      // Ours from before a restart (its id carries our tag, and MLS cannot decrypt it for
      // its sender): nothing to do. Another member copying the tag only loses its message.
      if (e.kind === "application" && bytesStartWith(e.id, live.ownTag)) return;
      throw err;
    }
    // A commit whose new members claim a pinned name with another key is refused like an
    // invalid one: the group stays at this epoch.
    if (r.kind === "commit" && !r.removed) this.#pin(live, live.engine.roster(r.newGroup));
    const before = this.#opts.audit && r.kind === "commit" ? live.engine.roster(live.group) : [];
    live.group = r.newGroup;
    if (r.kind === "commit") this.#auditCommit(live, e, before, r.removed);
    if (r.kind === "commit") {
      live.record.recovered = undefined; // a new epoch: fresh sending keys
      if (r.removed) {
        live.record.active = false;
        logLine(`skytale: ${this.identity} was removed from "${live.record.channel}"`);
      }
      if (live.record.pending && live.record.pending.epoch < live.engine.epoch(live.group)) {
        live.record.pending = undefined;
      }
    } else if (r.kind === "proposal") {
      this.#scheduleCommitPending(ctx, live);
    } else {
      const { tag, body } = openTagged(r.aad, r.data);
      const time = new Date(e.time).toISOString();
      if (tag === Tags.chat && body.length === 0) {
        this.#cover.received++; // cover traffic: never handed out
        return;
      }
      if (this.#opts.audit) {
        this.#auditSee(live, {
          type: "message",
          seq: e.seq,
          time,
          sender: r.senderId,
          tag,
          size: body.length,
          sha256: (await sha256(body)).toHex(),
        });
      }
      if (tag === Tags.chat) {
        // Handed out before a crash lost the record.
        if (e.seq <= live.delivered && !live.held.has(e.seq)) return;
        live.record.buffer.push({
          sender: r.sender,
          senderId: r.senderId,
          seq: e.seq,
          time,
          text: fromUtf8(body),
        });
      } else {
        if (e.seq <= live.tapped) return; // handed out before a crash lost the record
        const d: TaggedData = { sender: r.sender, senderId: r.senderId, seq: e.seq, data: body };
        handOut.push(() => {
          for (const tap of live.taps.get(tag) ?? []) {
            try {
              tap(d);
            } catch (err) {
              logLine(`skytale: a "${tag}" handler failed: ${message(err)}`);
            }
          }
        });
      }
    }
  }

  #scheduleCommitPending(ctx: Ctx, live: Live): void {
    if (live.proposalTimer) return;
    // Spread members out a little so usually only one of them commits.
    const index = live.engine.members(live.group).indexOf(this.identity);
    live.proposalTimer = setTimeout(() => {
      live.proposalTimer = undefined;
      if (this.#closed || !live.record.active) return;
      void this.#commit(ctx, live, async (g) => {
        const r = await live.engine.commitPending(g);
        return { commit: r.commit, newGroup: r.newGroup, result: undefined };
      }, true).catch((e) => logLine(`skytale: committing proposals failed: ${message(e)}`));
    }, 20 + 50 * Math.max(0, index));
  }

  /**
   * Builds a commit on the current epoch, publishes it and waits until it is
   * applied; on a nack, catches up and rebuilds.
   */
  #commit<T>(
    ctx: Ctx,
    live: Live,
    build: (g: Group) => Promise<{
      commit: Uint8Array;
      newGroup: Group;
      result: T;
      welcome?: RememberedWelcome;
    }>,
    onlyIfPending = false,
    reuse?: () => T | undefined,
  ): Promise<T | undefined> {
    return live.commitMutex.run(async () => {
      for (let attempt = 0; attempt < COMMIT_RETRIES; attempt++) {
        const built = await live.mutex.run(async () => {
          this.#assertActive(live);
          const again = reuse?.();
          if (again !== undefined) return { again };
          if (onlyIfPending && live.engine.pendingProposals(live.group) === 0) return undefined;
          const b = await build(live.group);
          const id = crypto.getRandomValues(new Uint8Array(16)).toHex();
          const epoch = live.engine.epoch(live.group);
          live.record.pending = {
            id,
            epoch,
            commit: b.commit,
            group: live.engine.encodeGroup(b.newGroup),
            welcome: b.welcome,
          };
          await this.#save(ctx, live);
          return { ...b, id, epoch };
        });
        if (built === undefined) return undefined;
        if ("again" in built) return built.again;
        const acked = await this.#publishPending(ctx, live, built.id, built.epoch, built.commit);
        if (acked) return built.result;
      }
      throw new RelayError(
        "stale_epoch",
        `Could not commit to "${live.record.channel}": the epoch kept moving after ${COMMIT_RETRIES} attempts`,
      );
    });
  }

  /** Publishes a persisted pending commit; true once applied, false after a nack (caught up). */
  async #publishPending(
    ctx: Ctx,
    live: Live,
    id: string,
    epoch: number,
    commit: Uint8Array,
  ): Promise<boolean> {
    const res = await ctx.relay.publish(live.record.channel, {
      id: Uint8Array.fromHex(id),
      kind: "commit",
      epoch,
      payload: commit,
    });
    if (res.ok) {
      const seq = res.seq;
      if (!await this.#waitFor(live, () => live.record.cursor >= seq, WAIT_MS)) {
        throw new InterruptedError(
          "timeout",
          `Commit to "${live.record.channel}" was accepted but not delivered back in time`,
        );
      }
      return true;
    }
    await live.mutex.run(async () => {
      if (live.record.pending?.id === id) {
        live.record.pending = undefined;
        await this.#save(ctx, live);
      }
    });
    if (res.code !== "stale_epoch") {
      throw new RelayError(
        "relay_error",
        `Relay refused a commit to "${live.record.channel}": ${res.code}`,
      );
    }
    const target = res.epoch;
    logLine(
      `skytale: commit to "${live.record.channel}" at epoch ${epoch} was nacked (relay at ${target}); catching up to retry`,
    );
    await this.#waitFor(live, () => live.engine.epoch(live.group) >= target, WAIT_MS);
    return false;
  }

  #assertActive(live: Live): void {
    if (!live.record.active) {
      throw new ValidationError(
        "unknown_channel",
        `"${this.identity}" is no longer a member of "${live.record.channel}"`,
      );
    }
  }

  async #get(channel: unknown): Promise<{ ctx: Ctx; live: Live }> {
    parseChannelName(channel);
    const ctx = await this.#context();
    const live = this.#channels.get(channel as string);
    if (!live) {
      throw new ValidationError(
        "unknown_channel",
        `Unknown channel "${channel}": create it or join it first`,
      );
    }
    return { ctx, live };
  }

  /**
   * Creates a channel with this identity as its first member.
   *
   * @param channel A name `org/namespace/service`.
   * @param options `ciphersuite`: the channel's MLS ciphersuite, e.g. the post-quantum hybrid
   *   `MLS_256_XWING_AES256GCM_SHA512_Ed25519` (default: the manager's `suite`). Members join
   *   with key packages of the same suite (`keyPackage({ ciphersuite })`).
   * @throws {SkytaleError} `invalid_channel`, or `channel_exists` if it exists here or on the relay.
   * @throws {ValidationError} `invalid_argument` for an unknown or unavailable ciphersuite.
   */
  async create(channel: string, options: { ciphersuite?: string } = {}): Promise<void> {
    parseChannelName(channel);
    const ctx = await this.#context();
    if (this.#channels.has(channel)) {
      throw new ValidationError("channel_exists", `Channel "${channel}" already exists here`);
    }
    const engine = await ctx.engineFor(options.ciphersuite);
    const group = await engine.createGroup(utf8(channel), this.identity, ctx.key);
    // The relay validates every later commit against this public state.
    if (!await ctx.relay.create(channel, await engine.groupInfo(group))) {
      throw new ValidationError(
        "channel_exists",
        `Channel "${channel}" already exists on the relay: join it with a Welcome or an invite`,
      );
    }
    const record: ChannelRecord = {
      channel,
      ...(engine.suite !== ctx.engine.suite ? { suite: engine.suite } : {}),
      group: engine.encodeGroup(group),
      cursor: 0,
      buffer: [],
      active: true,
      pins: { [this.identity]: memberOf(this.identity, ctx.key.publicKey).did },
    };
    await ctx.store.saveChannel(record);
    await this.#subscribe(ctx, await this.#live(ctx, record));
    await this.#auditStart(channel, "created", engine.roster(group), 0);
    this.#emitMembership({ channel, change: "joined" });
  }

  /**
   * Makes a new MLS KeyPackage; its private part stays on disk until a Welcome uses it.
   *
   * @param options `ciphersuite`: the suite of the channel it is for (default: the manager's).
   * @returns The KeyPackage message, hex, to hand to a member who will add this identity.
   */
  async keyPackage(options: { ciphersuite?: string } = {}): Promise<string> {
    const ctx = await this.#context();
    const engine = await ctx.engineFor(options.ciphersuite);
    const kp = await engine.newKeyPackage(this.identity, ctx.key);
    await ctx.store.saveKeyPackage({ ...kp, created: Date.now() });
    return kp.keyPackage.toHex();
  }

  /**
   * Adds a member: commits an Add through the relay and returns the Welcome.
   * Repeating the call with the same key package once the member is in (say
   * the first answer was lost) returns the same Welcome and commits nothing.
   *
   * @param channel The channel.
   * @param keyPackageHex The new member's KeyPackage, hex (from its `keyPackage()`).
   * @returns The Welcome, hex, for the new member's `join()`.
   */
  async addMember(channel: string, keyPackageHex: string): Promise<string> {
    const kp = fromHex(keyPackageHex, "Key package");
    const { ctx, live } = await this.#get(channel);
    const key = new Uint8Array(await crypto.subtle.digest("SHA-256", kp as BufferSource)).toHex();
    const welcome = await this.#commit(
      ctx,
      live,
      async (g) => {
        const r = await live.engine.commitAdd(g, kp);
        this.#pin(live, live.engine.roster(r.newGroup), false);
        return {
          commit: r.commit,
          newGroup: r.newGroup,
          result: r.welcome,
          welcome: { keyPackage: key, identity: r.identity, welcome: r.welcome },
        };
      },
      false,
      // The same key package again (an answer lost to a crash or a dropped connection): the
      // member is in already, so the Welcome made then is the one to hand over.
      () => {
        const w = live.record.welcomes?.find((x) => x.keyPackage === key);
        return w && live.engine.members(live.group).includes(w.identity) ? w.welcome : undefined;
      },
    );
    return welcome!.toHex();
  }

  /**
   * Joins a channel from a Welcome made for one of this identity's key packages.
   *
   * @param channel The channel the Welcome is for.
   * @param welcomeHex The Welcome, hex.
   */
  async join(channel: string, welcomeHex: string): Promise<void> {
    parseChannelName(channel);
    const welcome = fromHex(welcomeHex, "Welcome");
    const ctx = await this.#context();
    const existing = this.#channels.get(channel);
    if (existing?.record.active) {
      throw new ValidationError("channel_exists", `Already a member of "${channel}"`);
    }
    const candidates = await ctx.store.loadKeyPackages();
    const engine = await ctx.engineFor(ctx.welcomeSuite(welcome));
    const { group, ref } = await engine.join(welcome, candidates);
    const groupChannel = fromUtf8(engine.groupId(group));
    if (groupChannel !== channel) {
      throw new CryptoError(
        "welcome_mismatch",
        `Cannot join channel "${channel}": the Welcome is for "${groupChannel}"`,
      );
    }
    const roster = engine.roster(group);
    const names = new Set(roster.map((m) => m.name));
    if (names.size !== roster.length) {
      throw new CryptoError(
        "refused",
        `Cannot join "${channel}": two of its members share a name`,
      );
    }
    const record: ChannelRecord = {
      channel,
      ...(engine.suite !== ctx.engine.suite ? { suite: engine.suite } : {}),
      group: engine.encodeGroup(group),
      cursor: 0,
      buffer: [],
      active: true,
      pins: Object.fromEntries(roster.map((m) => [m.name, m.did])),
    };
    await ctx.store.saveChannel(record);
    await ctx.store.deleteKeyPackage(ref);
    try {
      await this.#subscribe(ctx, await this.#live(ctx, record));
    } catch (e) {
      if (!(e instanceof RelayError && e.code === "wrong_relay")) throw e;
      // Not joined: the key package is kept, so the same Welcome works once the relay is right.
      const kp = candidates.find((c) => c.ref === ref);
      if (kp) await ctx.store.saveKeyPackage(kp);
      this.#channels.delete(channel);
      if (existing) this.#channels.set(channel, existing);
      await (existing ? ctx.store.saveChannel(existing.record) : ctx.store.deleteChannel(channel));
      throw new RelayError(
        "wrong_relay",
        `Cannot join "${channel}" yet: ${e.message}. The Welcome stays usable: join with it again then`,
        { cause: e },
      );
    }
    this.#contexts.joined(channel); // a joiner asks a member for the current shared context
    await this.#auditStart(channel, "joined", roster, engine.epoch(group));
    this.#emitMembership({ channel, change: "joined" });
  }

  /**
   * Encrypts and sends a text message.
   *
   * @param channel The channel.
   * @param text The message.
   * @returns The relay's sequence number for it.
   */
  async send(channel: string, text: string): Promise<{ seq: number }> {
    if (typeof text !== "string" || text.length === 0) {
      throw new ValidationError("invalid_argument", "Message must be a non-empty string");
    }
    return await this.sendTagged(channel, Tags.chat, utf8(text));
  }

  /**
   * Sends bytes under a tag other layers listen for (see {@linkcode onTagged}).
   *
   * @param channel The channel.
   * @param tag The layer, e.g. `mcp`.
   * @param data The body.
   * @returns The relay's sequence number.
   */
  async sendTagged(channel: string, tag: string, data: Uint8Array): Promise<{ seq: number }> {
    if (data.length > MAX_MESSAGE_BYTES) {
      throw new ValidationError(
        "too_large",
        `Message is ${data.length} bytes; the limit is ${MAX_MESSAGE_BYTES}`,
      );
    }
    const { ctx, live } = await this.#get(channel);
    if (live.record.recovered) {
      // State came from the backup copy, which may predate messages already sent
      // with this epoch's keys: move to a new epoch first, so no key or nonce repeats.
      live.rekey ??= this.#commit(ctx, live, async (g) => {
        const r = await live.engine.commitUpdate(g);
        return { commit: r.commit, newGroup: r.newGroup, result: undefined };
      }).finally(() => live.rekey = undefined);
      await live.rekey;
    }
    const out = await this.#seal(ctx, live, data, tagData(tag));
    if (this.#opts.audit && data.length > 0) {
      this.#auditSent.set(out.id.toHex(), {
        tag,
        size: data.length,
        sha256: (await sha256(data)).toHex(),
      });
      if (this.#auditSent.size > MAX_SENT_IDS) {
        this.#auditSent.delete(this.#auditSent.keys().next().value!);
      }
    }
    const res = await ctx.relay.publish(channel, { ...out, kind: "application" as EntryKind });
    probes.sink?.(Stages.acked, out.id);
    if (!res.ok) {
      throw new RelayError("relay_error", `Relay refused a message to "${channel}": ${res.code}`);
    }
    return { seq: res.seq };
  }

  /**
   * Notes the publish id of an entry this member is about to send, saved with
   * the state that made it, so it is recognised when read back, even after a
   * restart. Ids of publishes that never got sequenced age out past the cap.
   */
  #remember(live: Live, id: Uint8Array): void {
    live.ownIds.add(id.toHex());
    if (live.ownIds.size > MAX_SENT_IDS) {
      live.ownIds.delete(live.ownIds.values().next().value!);
    }
  }

  /**
   * Encrypts a plaintext for sending. Sends that queue up while the channel is
   * busy are encrypted together in one pass. No key or nonce is ever used
   * twice, even after a crash: before a generation is used, the journal
   * durably reserves it (with the next `RESERVE_AHEAD`), and a restarted member
   * skips every reserved generation. So a burst costs one small fsync per
   * `RESERVE_AHEAD` messages, not a rewrite of the group per pass.
   */
  #seal(ctx: Ctx, live: Live, plaintext: Uint8Array, aad: Uint8Array): Promise<_Sealed> {
    return new Promise((resolve, reject) => {
      live.outbox.push({ plaintext, aad, resolve, reject });
      if (live.outbox.length > 1) return; // a pass is already queued and will take it
      void live.mutex.run(async () => {
        // At most RESERVE_AHEAD per pass, so a crash never skips more than a receiver takes.
        const items = live.outbox.splice(0, RESERVE_AHEAD);
        if (live.outbox.length > 0) {
          const rest = live.outbox;
          live.outbox = [];
          for (const r of rest) {
            void this.#seal(ctx, live, r.plaintext, r.aad).then(r.resolve, r.reject);
          }
        }
        const sealed: [_Outgoing, _Sealed][] = [];
        try {
          this.#assertActive(live);
          await this.#reserve(ctx, live, items.length);
          const reservedAt = probes.sink ? performance.now() : 0;
          for (const item of items) {
            try {
              const r = await live.engine.encrypt(live.group, item.plaintext, {
                ...this.#pad,
                aad: item.aad,
              });
              live.group = r.newGroup;
              const id = new Uint8Array(16);
              id.set(live.ownTag);
              crypto.getRandomValues(id.subarray(8));
              this.#remember(live, id);
              probes.sink?.(Stages.reserved, id, reservedAt);
              probes.sink?.(Stages.encrypted, id);
              sealed.push([item, { id, epoch: live.engine.epoch(live.group), payload: r.message }]);
            } catch (e) {
              item.reject(e);
            }
          }
        } catch (e) {
          for (const item of items) item.reject(e);
          return;
        }
        for (const [item, s] of sealed) item.resolve(s);
      });
    });
  }

  /** Makes sure the next `n` send generations are durably reserved in the journal. */
  async #reserve(ctx: Ctx, live: Live, n: number): Promise<void> {
    const epoch = live.engine.epoch(live.group);
    const next = live.engine.sendGeneration(live.group);
    const r = live.reserved;
    if (r && r.epoch === epoch && next + n <= r.gen) return;
    const reserved = { epoch, gen: next + n + RESERVE_AHEAD };
    await ctx.store.appendJournal(live.record.channel, { reserve: reserved }, { durable: true });
    live.reserved = reserved;
  }

  /**
   * Registers a handler for data under `tag` (not `chat`) arriving on a channel.
   *
   * @param channel The channel.
   * @param tag The layer, e.g. `mcp`.
   * @param handler Called once per message, in sequence order.
   * @returns A function that removes the handler.
   */
  async onTagged(
    channel: string,
    tag: string,
    handler: (d: TaggedData) => void,
  ): Promise<() => void> {
    const { live } = await this.#get(channel);
    let set = live.taps.get(tag);
    if (!set) live.taps.set(tag, set = new Set());
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * Returns the messages received since they were last handed out, waiting up
   * to `timeout` seconds when there is none yet; it returns as soon as the
   * first one arrives. What it returns is consumed: journaled as delivered
   * before it is returned, and never handed out again, also after a crash.
   * `peek` and `afterSeq` read without consuming.
   *
   * Consumers of one channel (`receive()`, {@linkcode messages} iterators and
   * `"message"` listeners) share one buffer: each message is handed to
   * whichever takes it first, once.
   *
   * @example
   * ```ts ignore
   * const ac = new AbortController();
   * const [first] = await manager.receive("acme/research/results", { timeout: 30, signal: ac.signal, max: 1 });
   * ```
   *
   * @param channel The channel.
   * @param options `timeout` in seconds (default 5, at most 300), `signal`,
   *   `afterSeq`, `peek` and `max` (see {@linkcode ReceiveOptions}).
   * @returns The messages, oldest first.
   * @throws {SkytaleError} `aborted` when `signal` fires while waiting.
   */
  async receive(channel: string, options: ReceiveOptions = {}): Promise<Message[]> {
    const timeout = options.timeout ?? 5;
    if (
      typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0 ||
      timeout > MAX_RECEIVE_SECONDS
    ) {
      throw new ValidationError(
        "invalid_argument",
        `Timeout must be a number of seconds from 0 to ${MAX_RECEIVE_SECONDS}, got ${
          String(timeout)
        }`,
      );
    }
    const max = options.max ?? Infinity;
    if (max !== Infinity && (!Number.isInteger(max) || max < 1)) {
      throw new ValidationError("invalid_argument", `max must be a positive integer, got ${max}`);
    }
    const after = options.afterSeq;
    if (after !== undefined && (!Number.isInteger(after) || after < 0)) {
      throw new ValidationError(
        "invalid_argument",
        `afterSeq must be a sequence number (an integer from 0), got ${after}`,
      );
    }
    const { ctx, live } = await this.#get(channel);
    const ms = timeout * 1000;
    if (after !== undefined) {
      await this.#waitFor(live, () => this.#since(live, after).length > 0, ms, options.signal);
      return this.#since(live, after).slice(0, max).map(publicMessage);
    }
    if (options.peek) {
      await this.#waitFor(live, () => live.record.buffer.length > 0, ms, options.signal);
      return live.record.buffer.slice(0, max).map(publicMessage);
    }
    return (await this.#take(ctx, live, ms, options.signal, max)).map(publicMessage);
  }

  /**
   * Waits (up to `ms`) for buffered messages and consumes up to `max` of them.
   * Another consumer may take what woke this one: then it waits on.
   */
  async #take(
    ctx: Ctx,
    live: Live,
    ms: number,
    signal: AbortSignal | undefined,
    max = Infinity,
  ): Promise<StoredMessage[]> {
    const end = Date.now() + ms;
    for (;;) {
      await this.#waitFor(
        live,
        () => live.record.buffer.length > 0,
        Math.max(0, end - Date.now()),
        signal,
      );
      const out = await live.mutex.run(async () => {
        const taken = live.record.buffer.slice(0, max);
        await this.#handOut(ctx, live, taken);
        return taken;
      });
      if (out.length > 0 || Date.now() >= end) return out;
    }
  }

  /**
   * Hands buffered messages to the application (under the channel's mutex):
   * journals, flushed, that they are delivered, then takes them off the buffer.
   * Exactly once: after a crash, neither the buffer nor a replay brings them back.
   */
  async #handOut(ctx: Ctx, live: Live, taken: StoredMessage[]): Promise<void> {
    if (taken.length === 0) return;
    const seqs = new Set(taken.map((m) => m.seq));
    const rest = live.record.buffer.filter((m) => !seqs.has(m.seq));
    const delivered = Math.max(live.delivered, ...seqs);
    // Messages left behind below the new mark (a filtered listener took later ones).
    const held = rest.filter((m) => m.seq <= delivered).map((m) => m.seq);
    await ctx.store.appendJournal(
      live.record.channel,
      held.length > 0 ? { delivered, held } : { delivered },
      { durable: true },
    );
    live.delivered = delivered;
    live.held = new Set(held);
    live.record.buffer = rest;
    live.dirty++;
    await this.#snapshotLater(ctx, live, false);
  }

  /**
   * Puts messages an iterator took but never yielded back at the front of the
   * buffer, and writes the record at once (rare: a loop left mid-burst).
   */
  async #putBack(ctx: Ctx, live: Live, back: StoredMessage[]): Promise<void> {
    await live.mutex.run(async () => {
      const buf = [...back, ...live.record.buffer].sort((a, b) => a.seq - b.seq);
      live.record.buffer = buf;
      live.held = new Set(buf.filter((m) => m.seq <= live.delivered).map((m) => m.seq));
      if (!this.#closed) await this.#save(ctx, live);
    });
    this.#notify(live);
  }

  /** Messages after `seq` in the recent history and the buffer, oldest first. */
  #since(live: Live, seq: number): StoredMessage[] {
    const bySeq = new Map<number, StoredMessage>();
    for (const m of live.recent) if (m.seq > seq) bySeq.set(m.seq, m);
    for (const m of live.record.buffer) if (m.seq > seq) bySeq.set(m.seq, m);
    return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  }

  /**
   * The channel's recent messages (the last 100 that arrived while this
   * manager ran, plus any still buffered from before), handed out or not.
   * Consumes nothing and never waits.
   *
   * @param channel The channel.
   * @param options `afterSeq`: only later messages; `max`: only the newest that many.
   * @returns The messages, oldest first.
   */
  async history(
    channel: string,
    options: { afterSeq?: number; max?: number } = {},
  ): Promise<Message[]> {
    const { live } = await this.#get(channel);
    const all = this.#since(live, options.afterSeq ?? 0);
    return all.slice(Math.max(0, all.length - (options.max ?? RECENT))).map(publicMessage);
  }

  /**
   * The channel's messages as an async iterator: each message is consumed
   * (journaled as delivered) once, like `receive()` hands it out. It waits
   * for messages without end, until `signal` fires or the manager closes, and
   * then ends. Leaving the loop early (`break`) puts the messages of the
   * current burst that were not yielded yet back into the buffer.
   *
   * @example
   * ```ts ignore
   * const ac = new AbortController();
   * for await (const m of manager.messages("acme/research/results", { signal: ac.signal })) {
   *   console.log(m.sender, m.text);
   * }
   * ```
   *
   * @param channel The channel.
   * @param options `signal` ends the iteration.
   * @returns An async iterator of messages, in sequence order.
   */
  async *messages(
    channel: string,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<Message, void, undefined> {
    const { ctx, live } = await this.#get(channel);
    const signal = options.signal;
    let batch: StoredMessage[] = [];
    try {
      while (!signal?.aborted && !this.#closed) {
        try {
          batch = await this.#take(ctx, live, MAX_RECEIVE_SECONDS * 1000, signal);
        } catch (e) {
          if (e instanceof SkytaleError && (e.code === "aborted" || e.code === "closed")) return;
          throw e;
        }
        while (batch.length > 0) yield publicMessage(batch.shift()!);
      }
    } finally {
      if (batch.length > 0) await this.#putBack(ctx, live, batch);
    }
  }

  /**
   * Waits until one of `channels` has messages buffered (for `receive()`),
   * up to `timeout` seconds; it returns as soon as one has.
   *
   * @param channels The channels to watch.
   * @param options `timeout` in seconds (default 5, at most 300) and `signal`.
   * @returns The channels with buffered messages (empty on timeout).
   * @throws {SkytaleError} `aborted` when `signal` fires while waiting.
   */
  async wait(
    channels: string[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const timeout = options.timeout ?? 5;
    if (!Number.isFinite(timeout) || timeout < 0 || timeout > MAX_RECEIVE_SECONDS) {
      throw new ValidationError(
        "invalid_argument",
        `Timeout must be a number of seconds from 0 to ${MAX_RECEIVE_SECONDS}, got ${timeout}`,
      );
    }
    const lives = await Promise.all(channels.map(async (c) => (await this.#get(c)).live));
    const ready = () =>
      lives.filter((l) => l.record.buffer.length > 0).map((l) => l.record.channel);
    await this.#waitFor(lives, () => ready().length > 0, timeout * 1000, options.signal);
    return ready();
  }

  /**
   * Listens for messages. `"message"`: each message of the channel (or of
   * every channel) is taken off the buffer and handed to the listener,
   * journaled as delivered like `receive()` does; all `"message"` listeners
   * that accept a message get it in the same hand-out, once. `"arrival"`: told
   * of each burst of new messages without consuming them. `"membership"`: told
   * when this identity creates, joins or leaves a channel or is removed.
   *
   * @example
   * ```ts ignore
   * const off = manager.on("message", (m, channel) => console.log(channel, m.text));
   * off();
   * ```
   *
   * @param event `"message"`, `"arrival"` or `"membership"`.
   * @param listener Called in sequence order, per channel.
   * @param options For `"message"`: `channel` and `filter`.
   * @returns A function that removes the listener.
   */
  on(
    event: "message",
    listener: (message: Message, channel: string) => void,
    options?: MessageListenerOptions,
  ): () => void;
  /**
   * Listens for bursts of new messages without consuming them.
   *
   * @param event `"arrival"`.
   * @param listener Called once per burst with the channel and its new messages.
   * @returns A function that removes the listener.
   */
  on(event: "arrival", listener: (channel: string, messages: Message[]) => void): () => void;
  /**
   * Listens for changes in this identity's list of channels.
   *
   * @param event `"membership"`.
   * @param listener Called with the channel and the change.
   * @returns A function that removes the listener.
   */
  on(event: "membership", listener: (change: MembershipChange) => void): () => void;
  on(
    event: "message" | "arrival" | "membership",
    listener: (...args: never[]) => void,
    options: MessageListenerOptions = {},
  ): () => void {
    if (event === "arrival") {
      const fn = listener as (channel: string, messages: Message[]) => void;
      this.#arrivals.add(fn);
      return () => void this.#arrivals.delete(fn);
    }
    if (event === "membership") {
      const fn = listener as (change: MembershipChange) => void;
      this.#membership.add(fn);
      return () => void this.#membership.delete(fn);
    }
    if (event !== "message") {
      throw new ValidationError("invalid_argument", `Unknown event "${String(event)}"`);
    }
    if (options.channel !== undefined) parseChannelName(options.channel);
    const l: _Listener = {
      channel: options.channel,
      filter: options.filter,
      fn: listener as (m: Message, channel: string) => void,
    };
    this.#listeners.add(l);
    // What is buffered already goes to it too.
    const ctx = this.#ctx;
    if (ctx) void ctx.then((c) => this.#drainAll(c), () => {});
    return () => void this.#listeners.delete(l);
  }

  #drainAll(ctx: Ctx): void {
    if (this.#listeners.size === 0) return;
    for (const live of this.#channels.values()) {
      void this.#drain(ctx, live).catch((e) =>
        logLine(`skytale: handing out "${live.record.channel}" failed: ${message(e)}`)
      );
    }
  }

  /** Hands what the `"message"` listeners accept to them (see {@linkcode on}). */
  async #drain(ctx: Ctx, live: Live): Promise<void> {
    const channel = live.record.channel;
    const ls = [...this.#listeners].filter((l) => l.channel === undefined || l.channel === channel);
    if (ls.length === 0 || live.record.buffer.length === 0) return;
    const accepts = (l: _Listener, m: Message) => {
      try {
        return !l.filter || l.filter(m, channel);
      } catch {
        return false;
      }
    };
    const handed = await live.mutex.run(async () => {
      if (this.#closed) return [];
      const take = live.record.buffer.filter((m) => ls.some((l) => accepts(l, publicMessage(m))));
      await this.#handOut(ctx, live, take);
      return take;
    });
    for (const stored of handed) {
      const m = publicMessage(stored);
      for (const l of ls) {
        if (!accepts(l, m)) continue;
        try {
          l.fn(m, channel);
        } catch (e) {
          logLine(`skytale: a "message" listener failed: ${message(e)}`);
        }
      }
    }
  }

  #emitMembership(change: MembershipChange): void {
    for (const fn of [...this.#membership]) {
      try {
        fn(change);
      } catch (e) {
        logLine(`skytale: a "membership" listener failed: ${message(e)}`);
      }
    }
  }

  /**
   * Lists this identity's channels.
   *
   * @returns Each channel with its epoch and members.
   */
  async channels(): Promise<ChannelSummary[]> {
    await this.#context();
    return [...this.#channels.values()].map((l) => ({
      channel: l.record.channel,
      ciphersuite: l.engine.suite,
      epoch: l.engine.epoch(l.group),
      members: l.engine.members(l.group),
      roster: l.engine.roster(l.group),
      active: l.record.active,
    })).sort((a, b) => a.channel.localeCompare(b.channel));
  }

  /**
   * Lists a channel's members.
   *
   * @param channel The channel.
   * @returns Member identities.
   */
  async members(channel: string): Promise<string[]> {
    const { live } = await this.#get(channel);
    return live.engine.members(live.group);
  }

  /**
   * Lists a channel's members with the dids their names are bound to.
   *
   * @param channel The channel.
   * @returns Name, did and fingerprint of each member, in leaf order.
   */
  async roster(channel: string): Promise<Member[]> {
    const { live } = await this.#get(channel);
    return live.engine.roster(live.group);
  }

  /**
   * Removes a member; it cannot decrypt anything sent afterwards.
   *
   * @param channel The channel.
   * @param identity The member to remove.
   */
  async removeMember(channel: string, identity: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    if (identity === this.identity) {
      throw new ValidationError(
        "invalid_argument",
        `Cannot remove yourself from "${channel}": use leave()`,
      );
    }
    await this.#commit(ctx, live, async (g) => {
      const r = await live.engine.commitRemove(g, identity);
      return { commit: r.commit, newGroup: r.newGroup, result: undefined };
    });
  }

  /**
   * Rotates this member's keys (an MLS self-update commit).
   *
   * @param channel The channel.
   */
  async rotateKeys(channel: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    await this.#commit(ctx, live, async (g) => {
      const r = await live.engine.commitUpdate(g);
      return { commit: r.commit, newGroup: r.newGroup, result: undefined };
    });
  }

  /**
   * Leaves a channel: proposes this member's removal (another member commits
   * it) and forgets the channel's state here.
   *
   * @param channel The channel.
   */
  async leave(channel: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    // A remaining member commits the self-remove proposal. A proposal lapses if
    // another commit is sequenced first, so propose again at the new epoch until
    // the removal is seen, or until LEAVE_WAIT_MS when nobody else is online.
    const deadline = Date.now() + LEAVE_WAIT_MS;
    live.leaving = true;
    while (live.record.active && live.engine.members(live.group).length > 1) {
      const out = await live.mutex.run(async () => {
        const r = await live.engine.proposeLeave(live.group);
        live.group = r.newGroup;
        const id = crypto.getRandomValues(new Uint8Array(16));
        this.#remember(live, id);
        // The proposal used a handshake key: persist before it leaves, as for sends.
        await this.#save(ctx, live);
        return { id, epoch: live.engine.epoch(live.group), payload: r.proposal };
      });
      const res = await ctx.relay.publish(channel, { ...out, kind: "proposal" as EntryKind });
      if (!res.ok) {
        throw new RelayError("relay_error", `Relay refused to leave "${channel}": ${res.code}`);
      }
      const left = Math.max(0, deadline - Date.now());
      await this.#waitFor(
        live,
        () => !live.record.active || live.engine.epoch(live.group) > out.epoch,
        left,
      );
      if (Date.now() >= deadline) break;
    }
    await ctx.relay.unsubscribe(channel).catch(() => {});
    await live.mutex.run(async () => {
      live.record.active = false;
      this.#channels.delete(channel);
      await ctx.store.deleteChannel(channel);
    });
    this.#emitMembership({ channel, change: "left" });
  }

  /**
   * An MLS exporter secret of a channel's current epoch (equal across members).
   *
   * @param channel The channel.
   * @param label The exporter label.
   * @param length The secret's length in bytes.
   * @returns The secret.
   */
  async exportSecret(channel: string, label: string, length = 32): Promise<Uint8Array> {
    const { live } = await this.#get(channel);
    return await live.engine.exporter(live.group, label, length);
  }

  /**
   * The channel's shared context: a replicated key-value document every
   * member holds (notes, artifacts, tasks, handoffs, decisions; see
   * `src/context/context.ts`).
   *
   * @param channel The channel (known to this manager).
   * @returns Its context: `get`, `set`, `delete`, `list`, `handoff`, `subscribe`.
   */
  context(channel: string): SharedContext {
    parseChannelName(channel);
    return this.#contexts.context(channel);
  }

  #audit: Promise<AuditLog> | undefined;
  /** Own messages' metadata until read back (publish id → tag, size, hash of the body). */
  #auditSent = new Map<string, { tag: string; size: number; sha256: string }>();

  /** The audit log (`src/audit/`), loaded on first use. */
  #auditLog(): Promise<AuditLog> {
    this.#audit ??= (async () => {
      const { AuditLog } = await import("../audit/log.ts");
      return new AuditLog({
        loadBlob: async (name) => (await this.#context()).store.loadBlob(name),
        saveBlob: async (name, data) => (await this.#context()).store.saveBlob(name, data),
        put: async (address, id, item, ttl) =>
          await (await this.#context()).relay.mailboxPut(address, item, ttl, id),
        lease: async (address, takeKey) => {
          // Its own connection: closing it hands the leased items back at once.
          const relay = (await this.#context()).openRelay();
          try {
            return await relay.mailboxLease(address, takeKey);
          } finally {
            await relay.close();
          }
        },
        exportSecret: (channel, label, length) => this.exportSecret(channel, label, length),
        context: (channel) => this.context(channel),
        whoami: () => this.whoami(),
        roster: (channel) => this.roster(channel),
      });
    })();
    return this.#audit;
  }

  #auditSee(live: Live, event: SeenEvent["event"]): void {
    (live.audit ??= []).push({ epoch: live.engine.epoch(live.group), event });
  }

  #auditCommit(live: Live, e: LogEntry, before: Member[], removed: boolean): void {
    if (!this.#opts.audit) return;
    const time = new Date(e.time).toISOString();
    if (removed) {
      this.#auditSee(live, { type: "removed", seq: e.seq, time });
      return;
    }
    const after = live.engine.roster(live.group);
    const was = new Set(before.map((m) => m.did));
    const is = new Set(after.map((m) => m.did));
    const added = after.filter((m) => !was.has(m.did)).map((m) => m.did);
    const gone = before.filter((m) => !is.has(m.did)).map((m) => m.did);
    this.#auditSee(live, {
      type: "commit",
      seq: e.seq,
      time,
      added,
      removed: gone,
      rotation: added.length === 0 && gone.length === 0,
    });
  }

  #auditOwn(ctx: Ctx, live: Live, e: LogEntry, id: string): void {
    const noted = this.#auditSent.get(id);
    this.#auditSent.delete(id);
    if (!noted) return; // cover traffic, or sent before a restart: its body is not known here
    this.#auditSee(live, {
      type: "message",
      seq: e.seq,
      time: new Date(e.time).toISOString(),
      sender: memberOf(this.identity, ctx.key.publicKey).did,
      ...noted,
    });
  }

  async #auditStart(
    channel: string,
    type: "created" | "joined",
    roster: Member[],
    epoch: number,
  ): Promise<void> {
    if (!this.#opts.audit) return;
    await (await this.#auditLog()).append(channel, [{
      epoch,
      event: { type, time: new Date().toISOString(), members: roster.map((m) => m.did) },
    }]);
  }

  /**
   * The channel's audit key, for an auditor: with it (and the relay's URL)
   * `skytale audit verify` reads and checks the channel's audit log without
   * being a member. One key per channel, shared by every member through the
   * shared context, the same across epochs.
   *
   * @param channel The channel (this manager must have `audit: true`).
   * @returns The key, `skt_audit_…`.
   */
  async exportAuditKey(channel: string): Promise<string> {
    await this.#get(channel);
    this.#assertAuditing();
    const { encodeAuditKey } = await import("../audit/chain.ts");
    return encodeAuditKey(await (await this.#auditLog()).key(channel));
  }

  /**
   * Reads the channel's audit log back from the relay and verifies it, after
   * this member's own events got there (waits up to 10 s).
   *
   * @param channel The channel (this manager must have `audit: true`).
   * @returns The verification report, with the entries that could be read.
   */
  async auditReport(channel: string): Promise<AuditReport> {
    await this.#get(channel);
    this.#assertAuditing();
    const log = await this.#auditLog();
    await log.settled(channel);
    return await log.report(channel);
  }

  #assertAuditing(): void {
    if (!this.#opts.audit) {
      throw new ValidationError(
        "invalid_argument",
        "This manager keeps no audit log: create it with { audit: true }",
      );
    }
  }

  /**
   * Makes an invite token: whoever holds it can join `channel` while this
   * manager runs, with no key package or Welcome copied by hand.
   *
   * @param channel The channel.
   * @param options `ttl` in seconds (default 3600) and `uses` (default 1).
   * @returns The token, `skt_inv_…`.
   */
  async invite(channel: string, options: { ttl?: number; uses?: number } = {}): Promise<string> {
    const { ctx, live } = await this.#get(channel);
    this.#assertActive(live);
    const ttl = options.ttl ?? 3600;
    const uses = options.uses ?? 1;
    if (!Number.isInteger(uses) || uses < 1 || uses > 1000) {
      throw new ValidationError("invalid_argument", `Invite uses must be 1-1000, got ${uses}`);
    }
    if (!Number.isFinite(ttl) || ttl <= 0 || ttl > 30 * 86400) {
      throw new ValidationError("invalid_argument", `Invite ttl must be 1s-30d, got ${ttl}`);
    }
    // The request mailbox is the inviter's: its take key never leaves this record.
    const box = await newMailbox("inv:");
    const record: InviteRecord = {
      relay: this.endpoint ?? `ws://127.0.0.1:${this.localPort}`,
      channel,
      id: crypto.getRandomValues(new Uint8Array(16)).toHex(),
      address: box.address,
      takeKey: box.takeKey.toHex(),
      secret: crypto.getRandomValues(new Uint8Array(32)).toHex(),
      expires: Date.now() + ttl * 1000,
      uses,
      ...(live.engine.suite !== ctx.engine.suite ? { suite: live.engine.suite } : {}),
    };
    await this.#inviteMutex.run(async () => {
      this.#invites.push(record);
      await this.#saveInvites(ctx);
    });
    this.#pollInvites(ctx);
    return encodeInviteToken(record);
  }

  async #saveInvites(ctx: Ctx): Promise<void> {
    const now = Date.now();
    // A spent invite is kept (and refuses what still comes) until its grace ends.
    this.#invites = this.#invites.filter((i) => i.expires + INVITE_GRACE_MS > now);
    await ctx.store.saveBlob(INVITES_BLOB, utf8(JSON.stringify(this.#invites)));
    // Nobody takes requests for a dropped invite any more.
    for (const id of this.#answered.keys()) {
      if (!this.#invites.some((i) => i.id === id)) this.#answered.delete(id);
    }
  }

  #pollInvites(ctx: Ctx): void {
    if (this.#inviteTimer || this.#closed) return;
    this.#inviteTimer = setTimeout(async () => {
      try {
        await this.#inviteMutex.run(() => this.#serveInvites(ctx));
      } catch (e) {
        logLine(`skytale: serving invites failed: ${message(e)}`);
      }
      this.#inviteTimer = undefined;
      if (this.#invites.length > 0) this.#pollInvites(ctx);
    }, INVITE_POLL_MS);
  }

  /**
   * Answers the join requests waiting for each live invite. A request is acked
   * to the relay only once it is used for good: its reply is with the relay and
   * the invite's remaining uses are saved. If this process stops (or loses the
   * relay) before that, the relay hands the request out again.
   */
  async #serveInvites(ctx: Ctx): Promise<void> {
    let changed = false;
    for (const inv of [...this.#invites]) {
      if (this.#closed) return;
      if (inv.expires + INVITE_GRACE_MS <= Date.now()) {
        changed = true;
        continue;
      }
      const address = inv.address;
      const takeKey = Uint8Array.fromHex(inv.takeKey);
      for (const item of await ctx.relay.mailboxLease(address, takeKey)) {
        if (this.#closed) return;
        const req = await open<{ keyPackage: string; reply: string; identity: string }>(
          inv.secret,
          `request:${inv.id}`,
          item.payload,
        );
        if (
          !req || typeof req.reply !== "string" || typeof req.keyPackage !== "string" ||
          typeof req.identity !== "string"
        ) {
          logLine(`skytale: ignored a join request for invite ${inv.id} that fails its MAC`);
          await ctx.relay.mailboxAck(address, [item.id], takeKey);
          continue;
        }
        // In flight answers are keyed by the request itself: two requests that share a reply
        // address are two requests.
        const reqKey = (await sha256(item.payload)).toHex();
        let answers = this.#answered.get(inv.id);
        if (!answers) this.#answered.set(inv.id, answers = new Map());
        let answer = answers.get(reqKey);
        if (!answer) {
          const { reply, admitted } = await this.#admit(ctx, inv, req);
          // The reply names the request it answers, so it cannot be replayed to another joiner.
          const sealed = await seal(inv.secret, `reply:${inv.id}`, { ...reply, req: reqKey });
          answers.set(reqKey, answer = { sealed, sent: false, saved: !admitted });
        }
        // The reply goes out before the uses are saved: a crash between the two hands the
        // request out again, and addMember then returns the same Welcome, counted once.
        if (!answer.sent) {
          await ctx.relay.mailboxPut(req.reply, answer.sealed, 600);
          answer.sent = true;
        }
        if (!answer.saved) {
          await this.#saveInvites(ctx);
          answer.saved = true;
        }
        // Used for good: the reply is with the relay and the uses it took are saved.
        await ctx.relay.mailboxAck(address, [item.id], takeKey);
        answers.delete(reqKey);
      }
    }
    if (changed) await this.#saveInvites(ctx);
  }

  /**
   * Decides one authenticated join request. Each admission takes one use; the
   * same request again (same reply address, same key package) gets the same
   * Welcome and takes none; everything else past the uses or the expiry (by
   * this clock, not the joiner's) is refused, and every refusal is logged.
   *
   * @returns The reply to seal, and whether a use was taken (to be saved).
   */
  async #admit(
    ctx: Ctx,
    inv: InviteRecord,
    req: { keyPackage: string; reply: string; identity: string },
  ): Promise<{ reply: { ok: boolean; welcome?: string; error?: string }; admitted: boolean }> {
    const refuse = (why: string) => {
      logLine(
        `skytale: refused a join request from "${req.identity}" to "${inv.channel}" by invite ${inv.id}: ${why}`,
      );
      return { reply: { ok: false, error: why }, admitted: false };
    };
    let kp: Uint8Array;
    try {
      kp = fromHex(req.keyPackage, "Key package");
    } catch (e) {
      return refuse(message(e));
    }
    let claimed: Member;
    try {
      claimed = ctx.engine.keyPackageMember(kp);
    } catch (e) {
      return refuse(message(e));
    }
    if (claimed.name !== req.identity) {
      return refuse(`it names "${req.identity}" but its key package is for "${claimed.name}"`);
    }
    const kpHash = (await sha256(kp)).toHex();
    const counted = inv.admitted ??= [];
    const prior = counted.find((a) => a.reply === req.reply || a.keyPackage === kpHash);
    if (prior) {
      if (prior.reply !== req.reply || prior.keyPackage !== kpHash) {
        return refuse(
          prior.reply === req.reply
            ? "its reply address was admitted before with another key package"
            : "its key package was admitted before under another reply address",
        );
      }
      // The same request again (handed out again after a crash, or re-sent): the same
      // Welcome, if the member is still in, and no use taken. Nothing is committed again.
      const welcome = this.#rememberedWelcome(inv.channel, kpHash);
      return welcome
        ? { reply: { ok: true, welcome }, admitted: false }
        : refuse("it was admitted before, and that Welcome is no longer kept");
    }
    if (inv.expires <= Date.now()) {
      return refuse(`the invite expired at ${new Date(inv.expires).toISOString()}`);
    }
    if (inv.uses <= 0) return refuse("the invite has no uses left");
    let welcome: string;
    try {
      // After a crash between this add and saving the use, addMember returns the same
      // Welcome without committing, and the use is counted now, once.
      welcome = await this.addMember(inv.channel, req.keyPackage);
    } catch (e) {
      return refuse(message(e));
    }
    inv.uses -= 1;
    counted.push({ reply: req.reply, keyPackage: kpHash });
    logLine(
      `skytale: admitted "${req.identity}" (${claimed.did}) to "${inv.channel}" by invite ${inv.id}`,
    );
    return { reply: { ok: true, welcome }, admitted: true };
  }

  /** The Welcome this member made for a key package (SHA-256 hex), while that member is in. */
  #rememberedWelcome(channel: string, kpHash: string): string | undefined {
    const live = this.#channels.get(channel);
    const w = live?.record.welcomes?.find((x) => x.keyPackage === kpHash);
    if (!live || !w) return undefined;
    return live.engine.members(live.group).includes(w.identity) ? w.welcome.toHex() : undefined;
  }

  /**
   * Joins a channel with an invite token from `invite()`: posts an
   * authenticated join request and waits for the inviter to admit this identity.
   *
   * @param channel The channel named in the invite.
   * @param token The token, `skt_inv_…`.
   * @param options `timeout` in seconds to wait for the inviter (default 30).
   */
  async joinWithToken(
    channel: string,
    token: string,
    options: { timeout?: number } = {},
  ): Promise<void> {
    parseChannelName(channel);
    const inv = decodeInviteToken(token);
    if (inv.channel !== channel) {
      throw new ValidationError(
        "invalid_argument",
        `The invite is for channel "${inv.channel}", not "${channel}"`,
      );
    }
    const ctx = await this.#context();
    if (this.#channels.get(channel)?.record.active) {
      throw new ValidationError("channel_exists", `Already a member of "${channel}"`);
    }
    const keyPackage = await this.keyPackage(inv.suite ? { ciphersuite: inv.suite } : {});
    // The reply mailbox is this joiner's: only its take key, kept here, takes from it.
    const { address: reply, takeKey } = await newMailbox("wel:");
    const request = await seal(inv.secret, `request:${inv.id}`, {
      keyPackage,
      reply,
      identity: this.identity,
    });
    // Only a reply that names this request answers it.
    const reqKey = (await sha256(request)).toHex();
    await ctx.relay.mailboxPut(
      inv.address,
      request,
      Math.max(1, Math.ceil((inv.expires - Date.now()) / 1000)),
    );
    const end = Date.now() + (options.timeout ?? 30) * 1000;
    // The reply is acked once used (the refusal reported, the join saved); until then a
    // lost answer or a dropped connection leaves it with the relay for the next take.
    const ack = (id: Uint8Array) =>
      ctx.relay.mailboxAck(reply, [id], takeKey).catch((e) =>
        logLine(`skytale: could not ack the invite reply for "${channel}": ${message(e)}`)
      );
    while (Date.now() < end && !this.#closed) {
      for (const item of await ctx.relay.mailboxLease(reply, takeKey)) {
        const r = await open<{ ok: boolean; welcome?: string; error?: string; req?: string }>(
          inv.secret,
          `reply:${inv.id}`,
          item.payload,
        );
        if (!r || r.req !== reqKey) {
          logLine(
            `skytale: ignored an invite reply for "${channel}" that ${
              r ? "answers another request" : "fails its MAC"
            }`,
          );
          await ack(item.id);
          continue;
        }
        if (!r.ok || !r.welcome) {
          await ack(item.id);
          throw new ValidationError(
            "invalid_argument",
            `The inviter refused to admit "${this.identity}" to "${channel}": ${r.error}`,
          );
        }
        await this.join(channel, r.welcome);
        await ack(item.id);
        return;
      }
      await new Promise((res) => setTimeout(res, INVITE_POLL_MS));
    }
    throw new InterruptedError(
      "timeout",
      `No answer from the inviter of "${channel}" in time: is its MCP server or agent running?`,
    );
  }

  /**
   * Writes every channel's state that is only in memory or in the journal to
   * its record now, flushed to disk. Nothing is lost without it (the journal
   * and the relay cover a crash); it makes the records on disk current, e.g.
   * before copying the data directory.
   */
  async flush(): Promise<void> {
    const ctx = await this.#context();
    await this.#flush(ctx);
  }

  async #flush(ctx: Ctx): Promise<void> {
    for (const live of this.#channels.values()) {
      await live.mutex.run(async () => {
        if (live.dirty > 0 || live.snapshotTimer !== undefined) await this.#save(ctx, live);
      });
    }
  }

  /** Writes what is only in memory (see {@linkcode flush}) and closes the relay connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inviteTimer) clearTimeout(this.#inviteTimer);
    await this.#inviteMutex.run(() => Promise.resolve());
    await this.#contexts.close();
    await (await this.#audit)?.close();
    const ctx = this.#ctx;
    for (const live of this.#channels.values()) {
      if (live.proposalTimer) clearTimeout(live.proposalTimer);
      clearTimeout(live.coverTimer);
      this.#notify(live);
    }
    if (ctx) {
      const c = await ctx.catch(() => undefined);
      if (c) {
        // Written once, flushed, so the next start reads one record and an empty journal.
        await this.#flush(c).catch((e) => logLine(`skytale: saving state failed: ${message(e)}`));
        await c.relay.close();
        // The last manager of the process stops the embedded relay it hosts, so the process can exit.
        await c.release?.();
        await c.store.close?.();
      }
    }
  }

  /**
   * Closes the manager ({@linkcode close}) when an `await using` block ends.
   *
   * @returns When closed.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The first 8 bytes of this member's publish ids in a channel, so it knows its
 * own entries after a restart without storing their ids.
 */
async function ownTag(key: IdentityKey, channel: string): Promise<Uint8Array> {
  const data = new Uint8Array([...key.publicKey, ...utf8(channel)]);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data)).subarray(0, 8);
}

function bytesStartWith(b: Uint8Array, prefix: Uint8Array): boolean {
  return b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
}

/**
 * Normalises a relay URL: `https://` becomes `wss://`, `http://` becomes `ws://`.
 *
 * @param url The URL as configured.
 * @returns A WebSocket URL.
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

/** A stored message as the application sees it. */
function publicMessage(m: StoredMessage): Message {
  return { sender: m.sender, senderId: m.senderId ?? "", seq: m.seq, time: m.time, text: m.text };
}

function aborted(signal: AbortSignal): SkytaleError {
  return new InterruptedError("aborted", "The wait was aborted", { cause: signal.reason });
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
