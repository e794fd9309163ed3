/**
 * The state a running `SkytaleChannelManager` keeps: {@linkcode Core}
 * (what the whole manager shares), {@linkcode Ctx} (what starting it loaded:
 * engines, store, identity key, relay) and {@linkcode Live} (one channel's
 * group, buffers and timers), with the few operations on them every other
 * part uses: bringing a stored channel back, saving it, waiting on it.
 *
 * @module
 */
import { CryptoError, InterruptedError, type SkytaleError, ValidationError } from "../errors.ts";
import type { Group, MlsEngine } from "../mls/engine.ts";
import type { IdentityKey, Member } from "../identity.ts";
import type { RelayClient } from "../relay/client.ts";
import type { ChannelRecord, Store, StoredMessage } from "../store/types.ts";
import { errorMessage, sha256 } from "../_util.ts";
import { logLine } from "../runtime/env.ts";
import { parseChannelName } from "../validate.ts";
import type { ContextHub } from "../context/context.ts";
import type { ContextHost, SharedContext } from "../context/types.ts";
import type { AuditLog, SeenEvent } from "../audit/log.ts";
import type { AuditReport } from "../audit/chain.ts";
import type { LogEntry } from "../relay/log/types.ts";
import { Mutex } from "./_mutex.ts";
import { Tags, utf8 } from "./envelope.ts";
import type {
  ChannelSummary,
  MembershipChange,
  Message,
  SkytaleOptions,
  TaggedData,
} from "./types.ts";

/** Own publish ids remembered until read back; older ones (never sequenced) are dropped. */
export const MAX_SENT_IDS = 4096;
/** A channel's record is rewritten at most this often while messages flow… */
const SNAPSHOT_MS = 1000;
/** …or once this many entries were applied since the last write. */
export const SNAPSHOT_ENTRIES = 512;
/** How long a commit, once accepted, may take to come back from the relay. */
export const WAIT_MS = 30_000;
/** Messages kept per channel as recent history (`receive({ afterSeq })`, `history()`). */
export const RECENT = 100;

/** A `"message"` listener (see `SkytaleChannelManager.on`). */
export interface Listener {
  channel: string | undefined;
  filter: ((m: Message, channel: string) => boolean) | undefined;
  fn: (m: Message, channel: string) => void;
}

/** What starting a manager loaded (`_startup.ts`). */
export interface Ctx {
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
 * The public calls of the manager that its parts make (admitting by invite
 * adds a member, the audit log reads rosters, …). `SkytaleChannelManager`
 * has them all, which the compiler checks where it hands itself to `newCore`
 * (`implements Host` would expose this private type in the public docs).
 * Stated here rather than picked from the class so that the parts do not
 * import the façade that imports them.
 */
export interface Host extends ContextHost {
  /** Adds a member by key package; returns the Welcome, hex. */
  addMember(channel: string, keyPackageHex: string): Promise<string>;
  /** Joins a channel from a Welcome, hex. */
  join(channel: string, welcomeHex: string): Promise<void>;
  /** A fresh key package of this agent, hex. */
  keyPackage(options?: { ciphersuite?: string }): Promise<string>;
  /** A secret derived from the channel's current epoch (MLS exporter). */
  exportSecret(channel: string, label: string, length?: number): Promise<Uint8Array>;
  /** The channel's shared context. */
  context(channel: string): SharedContext;
}

/**
 * The audit hooks every part calls (`audit: true`): `AuditTrail` in
 * `_audit.ts` implements them; each is a cheap no-op unless `enabled`.
 */
export interface Audit {
  /** Whether this manager keeps an audit log. */
  readonly enabled: boolean;
  /** The audit log (`src/audit/`), loaded on first use. */
  log(): Promise<AuditLog>;
  /** The log, if it was loaded (for closing). */
  loaded(): Promise<AuditLog> | undefined;
  /** Queues an event of the burst being applied to `live`. */
  see(live: Live, event: SeenEvent["event"]): void;
  /** Notes an applied commit: who came, who went, or this member's removal. */
  commit(live: Live, e: LogEntry, before: Member[], removed: boolean): void;
  /** Notes the metadata of a message this member is sending, until it is read back. */
  noteSent(id: Uint8Array, tag: string, data: Uint8Array): Promise<void>;
  /** Notes one of this member's own messages, read back from the relay. */
  own(ctx: Ctx, live: Live, e: LogEntry, id: string): void;
  /** Starts a channel's log: this member created or joined it. */
  start(
    channel: string,
    type: "created" | "joined",
    roster: Member[],
    epoch: number,
  ): Promise<void>;
  /** The channel's audit key, `skt_audit_…`. */
  exportKey(channel: string): Promise<string>;
  /** The channel's log, read back and verified. */
  report(channel: string): Promise<AuditReport>;
}

/** What the whole manager shares; every part receives it instead of reaching into the class. */
export interface Core {
  readonly identity: string;
  /** The options, `audit` resolved. */
  readonly opts: SkytaleOptions;
  /** Padding of sent messages to a bucket (`SkytaleOptions.padding`). */
  readonly pad: { pad?: (length: number) => number };
  readonly channels: Map<string, Live>;
  readonly cover: { sent: number; received: number };
  /** Shared contexts (`src/context/`), fed from every channel's `ctx` layer. */
  readonly contexts: ContextHub;
  readonly audit: Audit;
  readonly listeners: Set<Listener>;
  readonly arrivals: Set<(channel: string, messages: Message[]) => void>;
  readonly membership: Set<(change: MembershipChange) => void>;
  readonly host: Host;
  closed: boolean;
  /** `dataDir` or `SKYTALE_DATA_DIR`; unset: {@linkcode Core.home}. */
  readonly dataDir: string | undefined;
  /** The user's Skytale home, once starting needed it (files or the embedded relay). */
  home: string | undefined;
  /** Starting the manager, once its first call began it (`_lifecycle.ts`). */
  ctx: Promise<Ctx> | undefined;
  /** The started manager's context; starts it on the first call. */
  context(): Promise<Ctx>;
  /** The relay URL (`endpoint` option or `SKYTALE_RELAY`); `undefined`: the embedded relay. */
  endpoint(): string | undefined;
  /** The port of the embedded local relay. */
  localPort(): number;
  /** The relay, as a user would name it in an error message. */
  relayName(): string;
}

/** One channel's live state. */
export interface Live {
  record: ChannelRecord;
  /** The engine of the channel's ciphersuite. */
  engine: MlsEngine;
  group: Group;
  mutex: Mutex;
  commitMutex: Mutex;
  waiters: Set<() => void>;
  taps: Map<string, Set<(d: TaggedData) => void>>;
  /** Plaintexts waiting to be encrypted by the next `seal` pass (`_send.ts`). */
  outbox: Outgoing[];
  proposalTimer?: ReturnType<typeof setTimeout> | undefined;
  /** The key update that a channel recovered from its backup makes before sending. */
  rekey?: Promise<unknown> | undefined;
  /** Generations below `gen` at `epoch` are journaled as possibly used by this member. */
  reserved: { epoch: number; gen: number } | undefined;
  /** The next block of generations, being reserved in the background (`_send.ts`). */
  reserving?: Promise<void> | undefined;
  /** Counts the journal's clearings: a reservation written before one is not adopted after it. */
  journalEra: number;
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

/** An encrypted entry ready to publish. */
export interface Sealed {
  id: Uint8Array;
  epoch: number;
  payload: Uint8Array;
}

/** A plaintext waiting in a channel's outbox. */
export interface Outgoing {
  plaintext: Uint8Array;
  /** The MLS authenticated data: the layer's tag (empty for chat). */
  aad: Uint8Array;
  resolve: (s: Sealed) => void;
  reject: (e: unknown) => void;
}

/** The replay state the journal adds to a record: the newest of each kind. */
interface Replayed {
  reserved: { epoch: number; gen: number } | undefined;
  delivered: number;
  held: number[];
  tapped: number;
}

/** Folds a channel's journal into what its record says. */
async function replayJournal(ctx: Ctx, record: ChannelRecord): Promise<Replayed> {
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
  return { reserved, delivered, held, tapped };
}

/**
 * Brings a stored channel back: its record, plus what the journal adds since
 * the record was written (generations possibly used, messages handed out).
 */
export async function loadLive(core: Core, ctx: Ctx, record: ChannelRecord): Promise<Live> {
  const engine = await ctx.engineFor(record.suite);
  let group = engine.decodeGroup(record.group);
  const { reserved, delivered, held, tapped } = await replayJournal(ctx, record);
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
    journalEra: 0,
    delivered,
    held: heldSet,
    recent: record.buffer.slice(-RECENT),
    tapped,
    ownIds: new Set(record.sent ?? []),
    ownTag: await ownTag(ctx.key, record.channel),
    dirty: 0,
    savedAt: Date.now(),
  };
  live.taps.set(Tags.ctx, new Set([(d) => core.contexts.receive(record.channel, d)]));
  core.channels.set(record.channel, live);
  return live;
}

/** A new channel's record: this member's group at its start, nothing received yet. */
export function newRecord(
  ctx: Ctx,
  channel: string,
  engine: MlsEngine,
  group: Group,
  pins: Record<string, string>,
): ChannelRecord {
  return {
    channel,
    ...(engine.suite !== ctx.engine.suite ? { suite: engine.suite } : {}),
    group: engine.encodeGroup(group),
    cursor: 0,
    buffer: [],
    active: true,
    pins,
  };
}

/**
 * Persists group, cursor and buffer together. `durable: false` is for state
 * the relay can replay (applied entries): a power loss then only re-applies
 * them. Send ratchets and handed-out buffers are always flushed.
 */
export async function save(ctx: Ctx, live: Live, durable = true): Promise<void> {
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
    live.journalEra++;
    await ctx.store.clearJournal(live.record.channel);
    live.reserved = exact;
  }
}

/**
 * Writes the record after a burst only now and then (see SNAPSHOT_MS): the
 * relay replays whatever a crash loses, and the journal keeps what it cannot
 * (reserved generations, what was handed out). A record that must be written
 * (`now`: a new epoch, a settled commit, a removal) is written before the
 * burst is handed out; one that is merely due is written in a task of its own
 * right after, so the message that happens to make it due is not held up by
 * encoding and writing the group (a crash in between is a crash before it was
 * due).
 */
export async function snapshotLater(
  core: Core,
  ctx: Ctx,
  live: Live,
  now: boolean,
): Promise<void> {
  if (now) return await save(ctx, live, false);
  const due = live.dirty >= SNAPSHOT_ENTRIES || Date.now() - live.savedAt >= SNAPSHOT_MS;
  if (due) clearTimeout(live.snapshotTimer);
  else if (live.snapshotTimer !== undefined) return;
  live.snapshotTimer = setTimeout(() => {
    live.snapshotTimer = undefined;
    if (core.closed) return;
    void live.mutex.run(async () => {
      if (live.dirty > 0 && !core.closed) await save(ctx, live, false);
    }).catch((e) => logLine(`skytale: saving "${live.record.channel}" failed: ${errorMessage(e)}`));
  }, due ? 0 : SNAPSHOT_MS);
}

/** Writes every channel's state that is only in memory or in the journal, flushed. */
export async function flushAll(core: Core, ctx: Ctx): Promise<void> {
  for (const live of core.channels.values()) {
    await live.mutex.run(async () => {
      if (live.dirty > 0 || live.snapshotTimer !== undefined) await save(ctx, live);
    });
  }
}

/** Wakes whoever waits on the channel (see {@linkcode waitFor}). */
export function notify(live: Live): void {
  for (const w of [...live.waiters]) w();
}

/** The error of a call on a closed manager. */
export function closedError(): InterruptedError {
  return new InterruptedError("closed", "This channel manager is closed");
}

function aborted(signal: AbortSignal): SkytaleError {
  return new InterruptedError("aborted", "The wait was aborted", { cause: signal.reason });
}

/**
 * Waits (bounded) until `ready()` holds for one of the channels; false on
 * timeout. Rejects when the manager closes or `signal` fires.
 */
export function waitFor(
  core: Core,
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
      if (core.closed) end(() => reject(closedError()));
      else if (ready()) end(() => resolve(true));
    };
    const onAbort = () => end(() => reject(aborted(signal!)));
    const timer = setTimeout(() => end(() => resolve(false)), ms);
    for (const l of all) l.waiters.add(check);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Checks members against the dids pinned for their names in this channel
 * and pins the new ones (known-hosts style: the first key seen for a name
 * is the one it keeps).
 *
 * @throws {CryptoError} `identity_mismatch` naming both dids.
 */
export function pin(live: Live, members: Member[], commit = true): void {
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
 * A channel of this manager, once it is started.
 *
 * @throws {ValidationError} `invalid_channel` for a bad name, `unknown_channel` for one not here.
 */
export async function liveOf(core: Core, channel: unknown): Promise<{ ctx: Ctx; live: Live }> {
  parseChannelName(channel);
  const ctx = await core.context();
  const live = core.channels.get(channel as string);
  if (!live) {
    throw new ValidationError(
      "unknown_channel",
      `Unknown channel "${channel}": create it or join it first`,
    );
  }
  return { ctx, live };
}

/** @throws {ValidationError} `unknown_channel` once this member left or was removed. */
export function assertActive(core: Core, live: Live): void {
  if (!live.record.active) {
    throw new ValidationError(
      "unknown_channel",
      `"${core.identity}" is no longer a member of "${live.record.channel}"`,
    );
  }
}

/**
 * Notes the publish id of an entry this member is about to send, saved with
 * the state that made it, so it is recognised when read back, even after a
 * restart. Ids of publishes that never got sequenced age out past the cap.
 */
export function remember(live: Live, id: Uint8Array): void {
  live.ownIds.add(id.toHex());
  if (live.ownIds.size > MAX_SENT_IDS) {
    live.ownIds.delete(live.ownIds.values().next().value!);
  }
}

/**
 * The first 8 bytes of this member's publish ids in a channel, so it knows its
 * own entries after a restart without storing their ids.
 */
async function ownTag(key: IdentityKey, channel: string): Promise<Uint8Array> {
  return (await sha256(new Uint8Array([...key.publicKey, ...utf8(channel)]))).subarray(0, 8);
}

/** A channel as `SkytaleChannelManager.channels` lists it. */
export function summary(l: Live): ChannelSummary {
  return {
    channel: l.record.channel,
    ciphersuite: l.engine.suite,
    epoch: l.engine.epoch(l.group),
    members: l.engine.members(l.group),
    roster: l.engine.roster(l.group),
    active: l.record.active,
  };
}

/** A stored message as the application sees it. */
export function publicMessage(m: StoredMessage): Message {
  return { sender: m.sender, senderId: m.senderId ?? "", seq: m.seq, time: m.time, text: m.text };
}
