/**
 * Shared context: a replicated key-value document per channel that every
 * member holds, carried on the channel as MLS application messages under the
 * layer tag `ctx` (`sendTagged`/`onTagged`; chat never sees it).
 *
 * The document is a map of last-writer-wins registers ordered by hybrid
 * logical clocks (`hlc.ts`): each write (a set, or a delete as a tombstone)
 * carries its timestamp, and every member keeps, per key, the version with
 * the greatest one. Merging is commutative, associative and idempotent, so
 * members converge whatever order, duplication or delay the writes arrive
 * in — two members writing one key at once, or one writing while offline.
 *
 * - **Authorship** comes from MLS: a write is accepted only from the member
 *   whose did made it (its `senderId`).
 * - **Visibility**: an entry with `visibleTo` carries its value sealed with
 *   HPKE (`src/seal.ts`) to each named member's did (and its author's);
 *   other members and the relay hold only the boxes.
 * - **TTL**: an entry past its expiry is gone from `get` and `list` (its
 *   register stays, so an older write cannot bring it back).
 * - **Late joiners** ask for the current state (`sync`) when they join; one
 *   existing member answers with a snapshot sealed to the joiner's did — the
 *   state, not its history. A removed member cannot read anything later.
 * - **Durability**: the document and the writes not yet sent live in a store
 *   blob (`context/<channel>`), written before a write resolves; unsent writes
 *   are retried until the relay takes them.
 *
 * @module
 */
import { InterruptedError, SkytaleError, ValidationError } from "../errors.ts";
import type { Member } from "../identity.ts";
import { logLine } from "../runtime/env.ts";
import { compareHlc, type Hlc, HlcClock, isHlc } from "./hlc.ts";

/** HPKE sealing (and the crypto it loads) on first use only: not on the MCP server's start-up. */
function sealing(): Promise<typeof import("../seal.ts")> {
  return import("../seal.ts");
}

/** The layer tag of shared-context traffic. */
export const CONTEXT_TAG = "ctx";

/** Kinds of context entries. */
export const EntryTypes = {
  /** Free-form notes. */
  note: "note",
  /** A produced artifact (a file, a result, a link). */
  artifact: "artifact",
  /** A piece of work. */
  task: "task",
  /** A task handed from one member to another (see `handoff`). */
  handoff: "handoff",
  /** A decision taken. */
  decision: "decision",
} as const;

/** The kind of a context entry. */
export type EntryType = typeof EntryTypes[keyof typeof EntryTypes];

const TYPES = new Set<string>(Object.values(EntryTypes));
// deno-lint-ignore no-control-regex -- keys must not hold control characters
const KEY = /^[^\x00-\x1f\x7f]{1,256}$/;
/** The largest JSON of one entry's value. */
export const MAX_VALUE_BYTES = 64 * 1024;
const VALUE_INFO = new TextEncoder().encode("skytale context value v1");
const SNAPSHOT_INFO = new TextEncoder().encode("skytale context snapshot v1");
/** Writes batched into one message, and snapshot parts, stay below this. */
const MAX_BATCH_BYTES = 256 * 1024;
const RETRY_MS = [500, 1000, 2000, 5000, 10_000];
const SYNC_STEP_MS = 200;

/** An entry as the API returns it. */
export interface ContextEntry {
  /** The key. */
  key: string;
  /** Its kind. */
  type: EntryType;
  /** The value (any JSON). */
  value: unknown;
  /** Who wrote this version: name and did. */
  author: { name: string; did: string };
  /** When it was written (the writer's clock), ISO-8601. */
  updated: string;
  /** When it expires, ISO-8601, if it has a TTL. */
  expires?: string;
  /** The dids it is readable by, if restricted. */
  visibleTo?: string[];
  /** For a handoff: the did of the member it is handed to. */
  to?: string;
}

/** Options of {@linkcode SharedContext.set}. */
export interface SetOptions {
  /** The entry's kind (default `note`). */
  type?: EntryType;
  /** Names or dids of the members who may read the value (the writer always can). */
  visibleTo?: string[];
  /** Seconds until the entry disappears. */
  ttl?: number;
}

/** What a subscriber of {@linkcode SharedContext.subscribe} is told. */
export interface ContextEvent {
  /** `set` or `delete` for any change, `handoff` when a task is handed to this member. */
  kind: "set" | "delete" | "handoff";
  /** The key. */
  key: string;
  /** The entry after the change (undefined after a delete or when not readable here). */
  entry?: ContextEntry | undefined;
  /** Whether another member made the change (false for this member's own writes). */
  remote: boolean;
}

/** A channel's shared context, as `SkytaleChannelManager.context(channel)` returns it. */
export interface SharedContext {
  /**
   * Reads an entry.
   *
   * @param key The key.
   * @returns The entry, or undefined if absent, deleted, expired or not readable by this member.
   */
  get(key: string): Promise<ContextEntry | undefined>;
  /**
   * Writes an entry; resolves once it is stored locally. It reaches the other
   * members as soon as the relay takes it (see {@linkcode SharedContext.synced}).
   *
   * @param key The key.
   * @param value Any JSON value.
   * @param options Type, visibility and TTL.
   * @returns The entry written.
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<ContextEntry>;
  /**
   * Deletes an entry.
   *
   * @param key The key.
   * @returns True if there was a live entry.
   */
  delete(key: string): Promise<boolean>;
  /**
   * Lists the live entries readable by this member, by key.
   *
   * @param options Only entries of one `type`, or whose key starts with `prefix`.
   * @returns The entries.
   */
  list(options?: { type?: EntryType; prefix?: string }): Promise<ContextEntry[]>;
  /**
   * Hands a task to another member: a `handoff` entry naming it, which fires a
   * `handoff` event at the recipient.
   *
   * @param to The recipient's name or did.
   * @param task What to do.
   * @param options What was `tried` already; `visibleTo` to restrict it (the recipient is added); `ttl`.
   * @returns The entry.
   */
  handoff(
    to: string,
    task: string,
    options?: { tried?: string[]; visibleTo?: string[]; ttl?: number },
  ): Promise<ContextEntry>;
  /**
   * Calls `handler` for every change, local or remote.
   *
   * @param handler The handler.
   * @returns A function that unsubscribes.
   */
  subscribe(handler: (e: ContextEvent) => void): () => void;
  /**
   * Waits until every write of this member has been taken by the relay.
   *
   * @param timeoutMs How long to wait (default 30 s).
   * @returns True if nothing is left to send.
   */
  synced(timeoutMs?: number): Promise<boolean>;
}

/** What the context needs from its channel manager. */
export interface ContextHost {
  /** Sends bytes on a channel under a tag. */
  sendTagged(channel: string, tag: string, data: Uint8Array): Promise<{ seq: number }>;
  /** The channel's members. */
  roster(channel: string): Promise<Member[]>;
  /** This agent. */
  whoami(): Promise<Member>;
  /** Opens an HPKE box sealed to this agent's did. */
  openSealed(box: Uint8Array, info: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

/** The data a tag handler receives. */
export interface ContextDelivery {
  /** The sender's name. */
  sender: string;
  /** The sender's did. */
  senderId: string;
  /** The relay's seq. */
  seq: number;
  /** The body. */
  data: Uint8Array;
}

/** Named blobs of the identity's store. */
export interface BlobIo {
  /** Reads a blob. */
  load(name: string): Promise<Uint8Array | undefined>;
  /** Writes a blob atomically. */
  save(name: string, data: Uint8Array): Promise<void>;
}

/** One version of a register, as replicated (short names: it is on the wire). */
interface Version {
  /** key */
  k: string;
  /** type */
  y: EntryType;
  /** timestamp */
  h: Hlc;
  /** author did */
  a: string;
  /** author name */
  an: string;
  /** the value, when readable by every member */
  v?: unknown;
  /** did → base64 HPKE box of the value's JSON, when restricted */
  s?: Record<string, string>;
  /** expiry, ms since the epoch */
  x?: number;
  /** handoff recipient did */
  to?: string;
  /** a tombstone */
  d?: 1;
}

type Wire =
  | { v: 1; op: "put"; e: Version[] }
  | { v: 1; op: "sync"; id: string }
  | { v: 1; op: "snap"; id: string; to: string; box: string };

interface Saved {
  v: 1;
  entries: Version[];
  outbox: Version[];
  clock: { t: number; c: number };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64(b: Uint8Array): string {
  return b.toBase64();
}

function isVersion(x: unknown): x is Version {
  const v = x as Version;
  return typeof v === "object" && v !== null && typeof v.k === "string" && KEY.test(v.k) &&
    TYPES.has(v.y) && isHlc(v.h) && typeof v.a === "string" && typeof v.an === "string" &&
    (v.s === undefined || (typeof v.s === "object" && v.s !== null &&
      Object.values(v.s).every((b) => typeof b === "string"))) &&
    (v.x === undefined || Number.isFinite(v.x)) && (v.to === undefined || typeof v.to === "string");
}

function valueAad(channel: string, v: Version, did: string): Uint8Array {
  return enc.encode(JSON.stringify([channel, v.k, v.h.t, v.h.c, v.h.n, did]));
}

function snapshotAad(channel: string, id: string, to: string): Uint8Array {
  return enc.encode(JSON.stringify([channel, id, to]));
}

/** One channel's shared context. Made by {@linkcode ContextHub}. */
class ChannelContext implements SharedContext {
  #channel: string;
  #host: ContextHost;
  #io: BlobIo;
  #entries = new Map<string, Version>();
  #outbox: Version[] = [];
  #clock: HlcClock | undefined;
  #me: Member | undefined;
  #queue: Promise<unknown>;
  #subs = new Set<(e: ContextEvent) => void>();
  #opened = new Map<string, unknown>();
  #sending = false;
  #retry = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #syncTimers = new Map<string, ReturnType<typeof setTimeout>>();
  #drained = new Set<() => void>();
  #closed = false;

  constructor(channel: string, host: ContextHost, io: BlobIo) {
    this.#channel = channel;
    this.#host = host;
    this.#io = io;
    this.#queue = this.#load();
    this.#queue.catch(() => {}); // each call made meanwhile reports it
  }

  get #blob(): string {
    return `context/${this.#channel}`;
  }

  /** True once loading failed (e.g. the channel is unknown): the hub makes a new one. */
  failed = false;

  async #load(): Promise<void> {
    try {
      await this.#host.roster(this.#channel); // the channel must be known here
    } catch (e) {
      this.failed = true;
      throw e;
    }
    this.#me = await this.#host.whoami();
    const raw = await this.#io.load(this.#blob);
    let saved: Saved | undefined;
    if (raw) {
      try {
        saved = JSON.parse(dec.decode(raw)) as Saved;
      } catch {
        logLine(`skytale: the shared context of "${this.#channel}" is unreadable; starting empty`);
      }
    }
    for (const e of saved?.entries ?? []) if (isVersion(e)) this.#entries.set(e.k, e);
    this.#outbox = (saved?.outbox ?? []).filter(isVersion);
    this.#clock = new HlcClock(this.#me.did, saved?.clock);
    if (this.#outbox.length > 0) this.#kick();
  }

  /** Runs `fn` after everything queued before it (loading first). */
  #run<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.#queue.then(fn);
    this.#queue = p.catch(() => {});
    return p;
  }

  async #save(): Promise<void> {
    const saved: Saved = {
      v: 1,
      entries: [...this.#entries.values()],
      outbox: this.#outbox,
      clock: this.#clock!.last,
    };
    await this.#io.save(this.#blob, enc.encode(JSON.stringify(saved)));
  }

  /** Keeps `v` if it is newer than the key's current version; true if it was. */
  #merge(v: Version): boolean {
    const cur = this.#entries.get(v.k);
    if (cur && compareHlc(v.h, cur.h) <= 0) return false;
    this.#entries.set(v.k, v);
    this.#clock!.observe(v.h);
    return true;
  }

  #live(v: Version | undefined, now = Date.now()): v is Version {
    return v !== undefined && v.d === undefined && (v.x === undefined || v.x > now);
  }

  async #view(v: Version): Promise<ContextEntry | undefined> {
    let value: unknown = v.v;
    if (v.s) {
      const me = this.#me!.did;
      const box = v.s[me];
      if (box === undefined) return undefined;
      const id = `${v.k}\0${v.h.t}.${v.h.c}.${v.h.n}`;
      if (this.#opened.has(id)) value = this.#opened.get(id);
      else {
        try {
          const pt = await this.#host.openSealed(
            Uint8Array.fromBase64(box),
            VALUE_INFO,
            valueAad(this.#channel, v, me),
          );
          value = JSON.parse(dec.decode(pt));
        } catch {
          return undefined; // not sealed to this member after all
        }
        this.#opened.set(id, value);
      }
    }
    const entry: ContextEntry = {
      key: v.k,
      type: v.y,
      value,
      author: { name: v.an, did: v.a },
      updated: new Date(v.h.t).toISOString(),
    };
    if (v.x !== undefined) entry.expires = new Date(v.x).toISOString();
    if (v.s) entry.visibleTo = Object.keys(v.s);
    if (v.to !== undefined) entry.to = v.to;
    return entry;
  }

  #emit(e: ContextEvent): void {
    for (const s of [...this.#subs]) {
      try {
        s(e);
      } catch (err) {
        logLine(`skytale: a context subscriber failed: ${message(err)}`);
      }
    }
  }

  /** Emits the events a newly kept version means here. */
  async #announce(v: Version, remote: boolean): Promise<void> {
    if (this.#subs.size === 0) return;
    if (v.d !== undefined) {
      this.#emit({ kind: "delete", key: v.k, remote });
      return;
    }
    const entry = this.#live(v) ? await this.#view(v) : undefined;
    this.#emit({ kind: "set", key: v.k, entry, remote });
    if (v.y === EntryTypes.handoff && v.to === this.#me!.did && remote && entry) {
      this.#emit({ kind: "handoff", key: v.k, entry, remote });
    }
  }

  /** Resolves names and dids to dids of current members. */
  async #resolve(who: string[]): Promise<string[]> {
    const roster = await this.#host.roster(this.#channel);
    return who.map((w) => {
      const m = roster.find((r) => r.did === w || r.name === w);
      if (!m) {
        throw new ValidationError(
          "unknown_member",
          `"${w}" is not a member of "${this.#channel}": name a member or its did`,
        );
      }
      return m.did;
    });
  }

  async #write(
    key: string,
    type: EntryType,
    value: unknown,
    opts: {
      visibleTo?: string[] | undefined;
      ttl?: number | undefined;
      to?: string;
      del?: boolean;
    },
  ): Promise<Version> {
    if (typeof key !== "string" || !KEY.test(key)) {
      throw new ValidationError(
        "invalid_argument",
        `Context key must be 1-256 characters without control characters, got ${
          JSON.stringify(key)?.slice(0, 60)
        }`,
      );
    }
    if (!TYPES.has(type)) {
      throw new ValidationError(
        "invalid_argument",
        `Context entry type must be one of ${[...TYPES].join(", ")}, got "${String(type)}"`,
      );
    }
    if (opts.ttl !== undefined && (!Number.isFinite(opts.ttl) || opts.ttl <= 0)) {
      throw new ValidationError("invalid_argument", `TTL must be a positive number of seconds`);
    }
    let json: string | undefined;
    if (!opts.del) {
      json = value === undefined ? undefined : JSON.stringify(value);
      if (json === undefined) {
        throw new ValidationError("invalid_argument", `The value of "${key}" must be JSON`);
      }
      if (enc.encode(json).length > MAX_VALUE_BYTES) {
        throw new ValidationError(
          "too_large",
          `The value of "${key}" is over ${MAX_VALUE_BYTES} bytes of JSON`,
        );
      }
    }
    const readers = opts.visibleTo && opts.visibleTo.length > 0
      ? await this.#resolve(opts.visibleTo)
      : undefined;
    return await this.#run(async () => {
      const me = this.#me!;
      const v: Version = { k: key, y: type, h: this.#clock!.now(), a: me.did, an: me.name };
      if (opts.del) v.d = 1;
      else if (readers) {
        const all = [...new Set([...readers, me.did])];
        const pt = enc.encode(json!);
        const { sealBox, didBoxKey } = await sealing();
        v.s = {};
        for (const did of all) {
          v.s[did] = b64(
            await sealBox(didBoxKey(did), pt, VALUE_INFO, valueAad(this.#channel, v, did)),
          );
        }
        this.#opened.set(`${v.k}\0${v.h.t}.${v.h.c}.${v.h.n}`, JSON.parse(json!));
      } else v.v = JSON.parse(json!);
      if (opts.ttl !== undefined) v.x = Date.now() + opts.ttl * 1000;
      if (opts.to !== undefined) v.to = opts.to;
      this.#merge(v);
      this.#outbox.push(v);
      await this.#save();
      this.#kick();
      await this.#announce(v, false);
      return v;
    });
  }

  /** Sends what the outbox holds, in batches, retrying with backoff until the relay takes it. */
  #kick(): void {
    if (this.#sending || this.#closed || this.#retryTimer !== undefined) return;
    this.#sending = true;
    void (async () => {
      try {
        while (this.#outbox.length > 0 && !this.#closed) {
          const batch: Version[] = [];
          let size = 0;
          for (const v of this.#outbox) {
            const n = JSON.stringify(v).length;
            if (batch.length > 0 && size + n > MAX_BATCH_BYTES) break;
            batch.push(v);
            size += n;
          }
          await this.#send({ v: 1, op: "put", e: batch });
          await this.#run(async () => {
            this.#outbox = this.#outbox.filter((v) => !batch.includes(v));
            await this.#save();
          });
          this.#retry = 0;
        }
        for (const d of [...this.#drained]) d();
      } catch (e) {
        if (this.#closed || (e instanceof SkytaleError && e.code === "closed")) return;
        if (e instanceof SkytaleError && e.code === "unknown_channel") {
          logLine(`skytale: context writes to "${this.#channel}" stay unsent: ${message(e)}`);
          return;
        }
        const wait = RETRY_MS[Math.min(this.#retry++, RETRY_MS.length - 1)]!;
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined;
          this.#kick();
        }, wait);
      } finally {
        this.#sending = false;
      }
    })();
  }

  async #send(w: Wire): Promise<void> {
    await this.#host.sendTagged(this.#channel, CONTEXT_TAG, enc.encode(JSON.stringify(w)));
  }

  /** Takes one message of the `ctx` layer from another member. */
  receive(d: ContextDelivery): void {
    void this.#run(() => this.#receive(d)).catch((e) =>
      logLine(
        `skytale: ${this.#channel} seq ${d.seq}: dropped a context message from ${d.sender}: ${
          message(e)
        }`,
      )
    );
  }

  async #receive(d: ContextDelivery): Promise<void> {
    const w = JSON.parse(dec.decode(d.data)) as Wire;
    if (w?.v !== 1) throw new Error("not a version 1 context message");
    if (w.op === "put") {
      if (!Array.isArray(w.e)) throw new Error("a put without entries");
      const kept: Version[] = [];
      for (const v of w.e) {
        // Only the member that wrote a version may send it as a write.
        if (!isVersion(v) || v.a !== d.senderId || v.h.n !== d.senderId) continue;
        if (this.#merge(v)) kept.push(v);
      }
      if (kept.length > 0) await this.#save();
      for (const v of kept) await this.#announce(v, true);
    } else if (w.op === "sync") {
      if (d.senderId !== this.#me!.did && typeof w.id === "string") {
        await this.#scheduleSnapshot(w.id, d.senderId);
      }
    } else if (w.op === "snap") {
      if (typeof w.id !== "string") return;
      clearTimeout(this.#syncTimers.get(w.id));
      this.#syncTimers.delete(w.id);
      if (w.to !== this.#me!.did || typeof w.box !== "string") return;
      const pt = await this.#host.openSealed(
        Uint8Array.fromBase64(w.box),
        SNAPSHOT_INFO,
        snapshotAad(this.#channel, w.id, w.to),
      );
      const entries = JSON.parse(dec.decode(pt)) as unknown[];
      const kept: Version[] = [];
      for (const v of Array.isArray(entries) ? entries : []) {
        if (isVersion(v) && this.#merge(v)) kept.push(v);
      }
      if (kept.length > 0) await this.#save();
      for (const v of kept) await this.#announce(v, true);
    }
  }

  /**
   * Answers a joiner's `sync` with a snapshot sealed to it, after a delay that
   * grows with this member's rank, unless another member answers first.
   */
  async #scheduleSnapshot(id: string, to: string): Promise<void> {
    if (this.#entries.size === 0) return; // nothing to give; a member with state answers
    const roster = await this.#host.roster(this.#channel);
    if (!roster.some((m) => m.did === to)) return;
    const others = roster.filter((m) => m.did !== to).map((m) => m.did).sort();
    const rank = Math.max(0, others.indexOf(this.#me!.did));
    const timer = setTimeout(() => {
      this.#syncTimers.delete(id);
      if (this.#closed) return;
      void this.#run(() => this.#sendSnapshot(id, to)).catch((e) =>
        logLine(`skytale: sending a context snapshot on "${this.#channel}" failed: ${message(e)}`)
      );
    }, rank * SYNC_STEP_MS);
    this.#syncTimers.set(id, timer);
  }

  async #sendSnapshot(id: string, to: string): Promise<void> {
    const now = Date.now();
    // The state, not its history: an expired entry goes as a tombstone, without its value.
    const all = [...this.#entries.values()].map((v): Version =>
      v.x !== undefined && v.x <= now && v.d === undefined
        ? { k: v.k, y: v.y, h: v.h, a: v.a, an: v.an, x: v.x, d: 1 }
        : v
    );
    // In parts that each fit a message; each part is a snapshot of its keys.
    const parts: Version[][] = [[]];
    let size = 0;
    for (const v of all) {
      const n = JSON.stringify(v).length;
      if (size + n > MAX_BATCH_BYTES && parts[parts.length - 1]!.length > 0) {
        parts.push([]);
        size = 0;
      }
      parts[parts.length - 1]!.push(v);
      size += n;
    }
    for (const part of parts) {
      const { sealBox, didBoxKey } = await sealing();
      const box = await sealBox(
        didBoxKey(to),
        enc.encode(JSON.stringify(part)),
        SNAPSHOT_INFO,
        snapshotAad(this.#channel, id, to),
      );
      await this.#send({ v: 1, op: "snap", id, to, box: b64(box) });
    }
  }

  /** Asks the other members for the current state (a joiner does, once it is in). */
  requestSync(): void {
    const id = crypto.getRandomValues(new Uint8Array(12)).toHex();
    void this.#run(() => this.#send({ v: 1, op: "sync", id })).catch((e) =>
      logLine(`skytale: asking for the shared context of "${this.#channel}" failed: ${message(e)}`)
    );
  }

  get(key: string): Promise<ContextEntry | undefined> {
    return this.#run(() => {
      const v = this.#entries.get(key);
      return this.#live(v) ? this.#view(v) : undefined;
    });
  }

  async set(key: string, value: unknown, options: SetOptions = {}): Promise<ContextEntry> {
    const v = await this.#write(key, options.type ?? EntryTypes.note, value, options);
    return (await this.#view(v))!;
  }

  async delete(key: string): Promise<boolean> {
    const cur = await this.#run(() => this.#entries.get(key));
    const was = this.#live(cur);
    await this.#write(key, cur?.y ?? EntryTypes.note, undefined, { del: true });
    return was;
  }

  list(options: { type?: EntryType; prefix?: string } = {}): Promise<ContextEntry[]> {
    return this.#run(async () => {
      const now = Date.now();
      const out: ContextEntry[] = [];
      const keys = [...this.#entries.keys()].sort();
      for (const k of keys) {
        const v = this.#entries.get(k);
        if (!this.#live(v, now)) continue;
        if (options.type !== undefined && v.y !== options.type) continue;
        if (options.prefix !== undefined && !k.startsWith(options.prefix)) continue;
        const e = await this.#view(v);
        if (e) out.push(e);
      }
      return out;
    });
  }

  async handoff(
    to: string,
    task: string,
    options: { tried?: string[]; visibleTo?: string[]; ttl?: number } = {},
  ): Promise<ContextEntry> {
    if (typeof task !== "string" || task.length === 0) {
      throw new ValidationError("invalid_argument", "A handoff needs a non-empty task");
    }
    const [did] = await this.#resolve([to]);
    const roster = await this.#host.roster(this.#channel);
    const name = roster.find((m) => m.did === did)?.name ?? to;
    await this.#run(() => {});
    const me = this.#me!;
    const key = `handoff/${crypto.getRandomValues(new Uint8Array(6)).toHex()}`;
    const value = {
      task,
      tried: options.tried ?? [],
      from: { name: me.name, did: me.did },
      to: { name, did: did! },
      status: "open",
    };
    const v = await this.#write(key, EntryTypes.handoff, value, {
      visibleTo: options.visibleTo ? [...options.visibleTo, did!] : undefined,
      ttl: options.ttl,
      to: did!,
    });
    return (await this.#view(v))!;
  }

  subscribe(handler: (e: ContextEvent) => void): () => void {
    this.#subs.add(handler);
    return () => this.#subs.delete(handler);
  }

  async synced(timeoutMs = 30_000): Promise<boolean> {
    await this.#run(() => {});
    if (this.#outbox.length === 0) return true;
    return await new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#drained.delete(check);
        resolve(ok);
      };
      const check = () => {
        if (this.#outbox.length === 0) done(true);
      };
      const timer = setTimeout(() => done(this.#outbox.length === 0), timeoutMs);
      this.#drained.add(check);
    });
  }

  /** Stops retries and pending snapshots; waits for queued work. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const t of this.#syncTimers.values()) clearTimeout(t);
    this.#syncTimers.clear();
    for (const d of [...this.#drained]) d();
    await this.#queue.catch(() => {});
  }
}

/**
 * The shared contexts of one channel manager: made on first use or on the
 * first `ctx` message of a channel, so no write of another member is missed
 * while the application has not asked for the context yet.
 */
export class ContextHub {
  #host: ContextHost;
  #io: BlobIo;
  #contexts = new Map<string, ChannelContext>();
  #closed = false;

  /**
   * @param host The channel manager.
   * @param io Its store's blobs.
   */
  constructor(host: ContextHost, io: BlobIo) {
    this.#host = host;
    this.#io = io;
  }

  #of(channel: string): ChannelContext {
    let c = this.#contexts.get(channel);
    if (!c || c.failed) {
      this.#contexts.set(channel, c = new ChannelContext(channel, this.#host, this.#io));
    }
    return c;
  }

  /**
   * The shared context of a channel (the channel must be known to the manager).
   *
   * @param channel The channel.
   * @returns Its context.
   */
  context(channel: string): SharedContext {
    if (this.#closed) throw new InterruptedError("closed", "This channel manager is closed");
    return this.#of(channel);
  }

  /**
   * Hands a `ctx` message to its channel's context.
   *
   * @param channel The channel.
   * @param d The message.
   */
  receive(channel: string, d: ContextDelivery): void {
    if (!this.#closed) this.#of(channel).receive(d);
  }

  /**
   * Tells the context that this member just joined: it asks for the state.
   *
   * @param channel The channel.
   */
  joined(channel: string): void {
    if (!this.#closed) this.#of(channel).requestSync();
  }

  /** Stops every context's background work. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#contexts.values()].map((c) => c.close()));
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
