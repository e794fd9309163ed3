/**
 * The writing side of the audit log (see `chain.ts` for the format): a
 * manager made with `audit: true` hands every member-visible event of a
 * channel here, once per burst; this appends them to the member's own chain
 * and puts the encrypted items into the channel's audit mailbox at the relay.
 *
 * - **Durability per burst.** Events are queued in the store blob
 *   `audit/<channel>` before the channel's cursor is written, so a crash can
 *   only replay them (dropped: events with a seq at or below the last one
 *   kept). Sealed items wait in the blob until the relay took them; a re-put
 *   carries the same id and bytes, so the relay keeps one.
 * - **One key per channel.** The first member that audits derives it (MLS
 *   exporter, label `skytale audit`, at its current epoch) and writes it to
 *   the shared context under `audit/key`, where members — also later joiners,
 *   through the context snapshot — find it. A joiner waits a little for it
 *   before deriving its own.
 *
 * @module
 */
import { Mutex } from "../channel/_mutex.ts";
import type { Member } from "../identity.ts";
import type { SharedContext } from "../context/context.ts";
import { logLine } from "../runtime/env.ts";
import { errorMessage, sleep } from "../_util.ts";
import {
  AUDIT_LABEL,
  type AuditEvent,
  type AuditKeys,
  auditKeys,
  type AuditReport,
  itemHash,
  sealEntry,
  verifyChain,
} from "./chain.ts";

/** The shared-context key the audit key is kept under. */
export const AUDIT_CONTEXT_KEY = "audit/key";
/** How long the relay is asked to keep audit items (it caps this at its mailbox TTL limit). */
export const AUDIT_TTL_SECONDS = 365 * 24 * 3600;
const KEY_WAIT_MS = 3000;
const RETRY_MS = 1000;

/** What the audit log needs from its channel manager. */
export interface AuditHost {
  /** Reads a store blob. */
  loadBlob(name: string): Promise<Uint8Array | undefined>;
  /** Writes a store blob. */
  saveBlob(name: string, data: Uint8Array): Promise<void>;
  /** Puts an item into a relay mailbox under a chosen id. */
  put(address: string, id: Uint8Array, item: Uint8Array, ttlSeconds: number): Promise<void>;
  /** Leases a relay mailbox's items without acking them. */
  lease(address: string, takeKey: Uint8Array): Promise<{ payload: Uint8Array }[]>;
  /** An MLS exporter secret of the channel's current epoch. */
  exportSecret(channel: string, label: string, length: number): Promise<Uint8Array>;
  /** The channel's shared context. */
  context(channel: string): SharedContext;
  /** This agent. */
  whoami(): Promise<Member>;
  /** The channel's members. */
  roster(channel: string): Promise<Member[]>;
}

/** An event as a manager hands it over, with the epoch it was seen at. */
export interface SeenEvent {
  /** The MLS epoch after the event. */
  epoch: number;
  /** The event. */
  event: AuditEvent;
}

interface _State {
  key?: string;
  i: number;
  prev: string;
  lastSeq: number;
  queue: SeenEvent[];
  unsent: { id: string; item: string }[];
}

class _ChannelAudit {
  readonly mutex = new Mutex();
  state: Promise<_State>;
  keys: Promise<AuditKeys> | undefined;
  pumping = false;
  again = false;
  timer: ReturnType<typeof setTimeout> | undefined;
  constructor(state: Promise<_State>) {
    this.state = state;
  }
}

/** The audit logs of one manager's channels. */
export class AuditLog {
  #host: AuditHost;
  #channels = new Map<string, _ChannelAudit>();
  #closed = false;

  /**
   * @param host The channel manager's side.
   */
  constructor(host: AuditHost) {
    this.#host = host;
  }

  #of(channel: string): _ChannelAudit {
    let c = this.#channels.get(channel);
    if (!c) {
      const state = this.#host.loadBlob(`audit/${channel}`).then((b): _State =>
        b ? JSON.parse(new TextDecoder().decode(b)) : {
          i: 0,
          prev: "0".repeat(64),
          lastSeq: 0,
          queue: [],
          unsent: [],
        }
      );
      this.#channels.set(channel, c = new _ChannelAudit(state));
      state.catch(() => this.#channels.delete(channel));
    }
    return c;
  }

  #save(channel: string, s: _State): Promise<void> {
    return this.#host.saveBlob(`audit/${channel}`, new TextEncoder().encode(JSON.stringify(s)));
  }

  /**
   * Queues a burst of events durably, then appends them in the background.
   * Events with a seq at or below the last one kept are replays and dropped.
   *
   * @param channel The channel.
   * @param events The events, in the order seen.
   */
  async append(channel: string, events: SeenEvent[]): Promise<void> {
    if (this.#closed || events.length === 0) return;
    const c = this.#of(channel);
    await c.mutex.run(async () => {
      const s = await c.state;
      let added = 0;
      for (const e of events) {
        const seq = e.event.seq;
        if (seq !== undefined) {
          if (seq <= s.lastSeq) continue;
          s.lastSeq = seq;
        }
        s.queue.push(e);
        added++;
      }
      if (added > 0) await this.#save(channel, s);
    });
    this.#kick(channel, c);
  }

  #kick(channel: string, c: _ChannelAudit): void {
    if (this.#closed) return;
    if (c.pumping) {
      c.again = true;
      return;
    }
    c.pumping = true;
    void this.#pump(channel, c).then(
      () => {},
      (e) => {
        logLine(`skytale: audit log of "${channel}": ${errorMessage(e)}`);
        clearTimeout(c.timer);
        c.timer = setTimeout(() => this.#kick(channel, c), RETRY_MS);
        (c.timer as { unref?: () => void }).unref?.();
      },
    ).finally(() => {
      c.pumping = false;
      if (c.again && !this.#closed) {
        c.again = false;
        this.#kick(channel, c);
      }
    });
  }

  /** Seals what is queued and puts what is sealed, until nothing is left. */
  async #pump(channel: string, c: _ChannelAudit): Promise<void> {
    const keys = await this.#keys(channel, c);
    const me = (await this.#host.whoami()).did;
    const unsent = await c.mutex.run(async () => {
      const s = await c.state;
      if (s.queue.length > 0) {
        for (const q of s.queue) {
          const item = await sealEntry(keys, channel, {
            writer: me,
            i: s.i,
            prev: s.prev,
            epoch: q.epoch,
            event: q.event,
          });
          const id = (await itemHash(new TextEncoder().encode(`${me}\0${s.i}`))).slice(0, 32);
          s.unsent.push({ id, item: item.toHex() });
          s.prev = await itemHash(item);
          s.i++;
        }
        s.queue = [];
        await this.#save(channel, s);
      }
      return s.unsent.slice();
    });
    for (const u of unsent) {
      if (this.#closed) return;
      await this.#host.put(
        keys.address,
        Uint8Array.fromHex(u.id),
        Uint8Array.fromHex(u.item),
        AUDIT_TTL_SECONDS,
      );
    }
    if (unsent.length === 0) return;
    await c.mutex.run(async () => {
      const s = await c.state;
      s.unsent.splice(0, unsent.length);
      await this.#save(channel, s);
    });
  }

  #keys(channel: string, c: _ChannelAudit): Promise<AuditKeys> {
    c.keys ??= this.key(channel).then(auditKeys);
    c.keys.catch(() => c.keys = undefined);
    return c.keys;
  }

  /**
   * The channel's audit key: kept here, or from the shared context, or, when no
   * member has one yet, derived now and written to the shared context.
   *
   * @param channel The channel.
   * @returns The 32-byte key.
   */
  async key(channel: string): Promise<Uint8Array> {
    const c = this.#of(channel);
    const kept = (await c.state).key;
    if (kept) return Uint8Array.fromHex(kept);
    const ctx = this.#host.context(channel);
    const read = async () => {
      const v = (await ctx.get(AUDIT_CONTEXT_KEY))?.value as { key?: unknown } | undefined;
      return typeof v?.key === "string" && /^[0-9a-f]{64}$/.test(v.key) ? v.key : undefined;
    };
    let hex = await read();
    if (!hex && (await this.#host.roster(channel)).length > 1) {
      // A joiner: the other members' context snapshot may be on its way.
      const end = Date.now() + KEY_WAIT_MS;
      while (!hex && Date.now() < end && !this.#closed) {
        await sleep(100);
        hex = await read();
      }
    }
    if (!hex) {
      hex = (await this.#host.exportSecret(channel, AUDIT_LABEL, 32)).toHex();
      await ctx.set(AUDIT_CONTEXT_KEY, { key: hex }, { type: "note" });
    }
    const found = hex;
    await c.mutex.run(async () => {
      const s = await c.state;
      s.key ??= found;
      await this.#save(channel, s);
    });
    return Uint8Array.fromHex((await c.state).key!);
  }

  /**
   * Reads the channel's audit log back from the relay and verifies it.
   *
   * @param channel The channel.
   * @returns The report.
   */
  async report(channel: string): Promise<AuditReport> {
    const keys = await this.#keys(channel, this.#of(channel));
    const items = await this.#host.lease(keys.address, keys.takeKey);
    return await verifyChain(keys, channel, items.map((i) => i.payload));
  }

  /**
   * Waits until every queued event of a channel is at the relay.
   *
   * @param channel The channel.
   * @param timeoutMs How long to wait.
   * @returns True if nothing is left.
   */
  async settled(channel: string, timeoutMs = 10_000): Promise<boolean> {
    const c = this.#of(channel);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await c.state;
      if (s.queue.length === 0 && s.unsent.length === 0 && !c.pumping) return true;
      if (Date.now() >= end) return false;
      if (!c.pumping) this.#kick(channel, c);
      await sleep(50);
    }
  }

  /** Stops background work. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const c of this.#channels.values()) {
      clearTimeout(c.timer);
      await c.mutex.run(() => Promise.resolve());
    }
  }
}
