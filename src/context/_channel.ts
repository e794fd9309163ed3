/**
 * One channel's shared context: the registers in memory and in the store
 * blob, local writes (stored first, then sent, retried until the relay takes
 * them), writes of other members merged as they arrive, and the snapshot
 * exchange for late joiners. Every operation runs in order behind loading.
 *
 * @module
 */
import { errorMessage, randomHex } from "../_util.ts";
import { SkytaleError, ValidationError } from "../errors.ts";
import type { Member } from "../identity.ts";
import { logLine } from "../runtime/env.ts";
import { compareHlc, HlcClock } from "./hlc.ts";
import {
  batches,
  checkWrite,
  forSnapshot,
  isLive,
  type Saved,
  toEntry,
  type Version,
  versionId,
  type Wire,
} from "./_version.ts";
import { openSnapshot, openValue, sealSnapshot, sealValue } from "./_visibility.ts";
import {
  type BlobIo,
  CONTEXT_TAG,
  type ContextDelivery,
  type ContextEntry,
  type ContextEvent,
  type ContextHost,
  type EntryType,
  EntryTypes,
  type SetOptions,
  type SharedContext,
} from "./types.ts";

/** The parsers of what others send (and zod with them) on first use only. */
function parsing(): Promise<typeof import("./_schema.ts")> {
  return import("./_schema.ts");
}

const RETRY_MS = [500, 1000, 2000, 5000, 10_000];
const SYNC_STEP_MS = 200;

const enc = new TextEncoder();

/** One channel's shared context. Made by `ContextHub`. */
export class ChannelContext implements SharedContext {
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

  /**
   * Starts loading the context; operations wait for it.
   *
   * @param channel The channel.
   * @param host The channel manager.
   * @param io Its store's blobs.
   */
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
    const loaded = raw ? (await parsing()).parseSaved(raw) : undefined;
    if (loaded !== undefined && "unreadable" in loaded) {
      logLine(
        `skytale: the shared context of "${this.#channel}" is unreadable (${loaded.unreadable}); starting empty`,
      );
    } else if (loaded !== undefined) {
      for (const e of loaded.entries) this.#entries.set(e.k, e);
      this.#outbox = loaded.outbox;
    }
    const clock = loaded !== undefined && !("unreadable" in loaded) ? loaded.clock : undefined;
    this.#clock = new HlcClock(this.#me.did, clock);
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

  /** Merges versions from others, stores what was kept and announces it. */
  async #mergeAll(versions: Version[]): Promise<void> {
    const kept = versions.filter((v) => this.#merge(v));
    if (kept.length > 0) await this.#save();
    for (const v of kept) await this.#announce(v, true);
  }

  async #view(v: Version): Promise<ContextEntry | undefined> {
    let value: unknown = v.v;
    if (v.s) {
      const id = versionId(v);
      if (this.#opened.has(id)) value = this.#opened.get(id);
      else {
        const opened = await openValue(this.#host, this.#channel, v, this.#me!.did);
        if (opened === undefined) return undefined;
        value = opened.value;
        this.#opened.set(id, value);
      }
    }
    return toEntry(v, value);
  }

  #emit(e: ContextEvent): void {
    for (const s of [...this.#subs]) {
      try {
        s(e);
      } catch (err) {
        logLine(`skytale: a context subscriber failed: ${errorMessage(err)}`);
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
    const entry = isLive(v) ? await this.#view(v) : undefined;
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
    const json = checkWrite(key, type, value, opts);
    const readers = opts.visibleTo && opts.visibleTo.length > 0
      ? await this.#resolve(opts.visibleTo)
      : undefined;
    return await this.#run(async () => {
      const me = this.#me!;
      const v: Version = { k: key, y: type, h: this.#clock!.now(), a: me.did, an: me.name };
      if (opts.del) v.d = 1;
      else if (readers) {
        v.s = await sealValue(this.#channel, v, json!, [...new Set([...readers, me.did])]);
        this.#opened.set(versionId(v), JSON.parse(json!));
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
          const batch = batches(this.#outbox)[0]!;
          await this.#send({ v: 1, op: "put", e: batch });
          await this.#run(async () => {
            this.#outbox = this.#outbox.filter((v) => !batch.includes(v));
            await this.#save();
          });
          this.#retry = 0;
        }
        for (const d of [...this.#drained]) d();
      } catch (e) {
        this.#sendFailed(e);
      } finally {
        this.#sending = false;
      }
    })();
  }

  /** After a failed send: give up when closed or the channel is gone, else retry later. */
  #sendFailed(e: unknown): void {
    if (this.#closed || (e instanceof SkytaleError && e.code === "closed")) return;
    if (e instanceof SkytaleError && e.code === "unknown_channel") {
      logLine(`skytale: context writes to "${this.#channel}" stay unsent: ${errorMessage(e)}`);
      return;
    }
    const wait = RETRY_MS[Math.min(this.#retry++, RETRY_MS.length - 1)]!;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#kick();
    }, wait);
  }

  async #send(w: Wire): Promise<void> {
    await this.#host.sendTagged(this.#channel, CONTEXT_TAG, enc.encode(JSON.stringify(w)));
  }

  /**
   * Takes one message of the `ctx` layer from another member.
   *
   * @param d The message.
   */
  receive(d: ContextDelivery): void {
    void this.#run(() => this.#receive(d)).catch((e) =>
      logLine(
        `skytale: ${this.#channel} seq ${d.seq}: dropped a context message from ${d.sender}: ${
          errorMessage(e)
        }`,
      )
    );
  }

  async #receive(d: ContextDelivery): Promise<void> {
    const { parseWire, parseSnapshot } = await parsing();
    const w = parseWire(d.data);
    if (w?.op === "put") {
      // Only the member that wrote a version may send it as a write.
      await this.#mergeAll(w.e.filter((v) => v.a === d.senderId && v.h.n === d.senderId));
    } else if (w?.op === "sync") {
      if (d.senderId !== this.#me!.did) await this.#scheduleSnapshot(w.id, d.senderId);
    } else if (w?.op === "snap") {
      clearTimeout(this.#syncTimers.get(w.id));
      this.#syncTimers.delete(w.id);
      if (w.to !== this.#me!.did) return;
      const pt = await openSnapshot(this.#host, this.#channel, w.id, w.to, w.box);
      await this.#mergeAll(parseSnapshot(pt));
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
        logLine(
          `skytale: sending a context snapshot on "${this.#channel}" failed: ${errorMessage(e)}`,
        )
      );
    }, rank * SYNC_STEP_MS);
    this.#syncTimers.set(id, timer);
  }

  async #sendSnapshot(id: string, to: string): Promise<void> {
    const now = Date.now();
    // The state, not its history; in parts that each fit a message, each a snapshot of its keys.
    const all = [...this.#entries.values()].map((v) => forSnapshot(v, now));
    for (const part of batches(all)) {
      const box = await sealSnapshot(this.#channel, id, to, part);
      await this.#send({ v: 1, op: "snap", id, to, box });
    }
  }

  /** Asks the other members for the current state (a joiner does, once it is in). */
  requestSync(): void {
    const id = randomHex(12);
    void this.#run(() => this.#send({ v: 1, op: "sync", id })).catch((e) =>
      logLine(
        `skytale: asking for the shared context of "${this.#channel}" failed: ${errorMessage(e)}`,
      )
    );
  }

  get(key: string): Promise<ContextEntry | undefined> {
    return this.#run(() => {
      const v = this.#entries.get(key);
      return isLive(v) ? this.#view(v) : undefined;
    });
  }

  async set(key: string, value: unknown, options: SetOptions = {}): Promise<ContextEntry> {
    const v = await this.#write(key, options.type ?? EntryTypes.note, value, options);
    return (await this.#view(v))!;
  }

  async delete(key: string): Promise<boolean> {
    const cur = await this.#run(() => this.#entries.get(key));
    const was = isLive(cur);
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
        if (!isLive(v, now)) continue;
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
    const key = `handoff/${randomHex(6)}`;
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
