/**
 * The manager's side of the audit log (`audit: true`, `src/audit/`): it notes
 * what each channel sees (joins, commits, removals, message metadata) while
 * entries are applied, and hands each burst's events to the {@linkcode AuditLog},
 * loaded on first use.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { type Member, memberOf } from "../identity.ts";
import type { LogEntry } from "../relay/log/types.ts";
import type { AuditLog, SeenEvent } from "../audit/log.ts";
import type { AuditReport } from "../audit/chain.ts";
import { sha256Hex } from "../_util.ts";
import { type Audit, type Ctx, type Host, type Live, MAX_SENT_IDS } from "./_live.ts";

/** What the audit trail needs of its manager. */
export interface AuditTrailHost {
  /** Whether this manager keeps an audit log. */
  enabled: boolean;
  /** This agent's identity. */
  identity: string;
  /** The started manager's context. */
  context(): Promise<Ctx>;
  /** The manager's public calls. */
  host: Host;
}

/** Audit hooks of one manager: cheap no-ops unless `enabled`. */
export class AuditTrail implements Audit {
  readonly enabled: boolean;
  #h: AuditTrailHost;
  #log: Promise<AuditLog> | undefined;
  /** Own messages' metadata until read back (publish id → tag, size, hash of the body). */
  #sent = new Map<string, { tag: string; size: number; sha256: string }>();

  /** @param host What the trail needs of its manager. */
  constructor(host: AuditTrailHost) {
    this.enabled = host.enabled;
    this.#h = host;
  }

  /** The audit log (`src/audit/`), loaded on first use. */
  log(): Promise<AuditLog> {
    const h = this.#h;
    this.#log ??= (async () => {
      const { AuditLog } = await import("../audit/log.ts");
      return new AuditLog({
        loadBlob: async (name) => (await h.context()).store.loadBlob(name),
        saveBlob: async (name, data) => (await h.context()).store.saveBlob(name, data),
        put: async (address, id, item, ttl) =>
          await (await h.context()).relay.mailboxPut(address, item, ttl, id),
        lease: async (address, takeKey) => {
          // Its own connection: closing it hands the leased items back at once.
          const relay = (await h.context()).openRelay();
          try {
            return await relay.mailboxLease(address, takeKey);
          } finally {
            await relay.close();
          }
        },
        exportSecret: (channel, label, length) => h.host.exportSecret(channel, label, length),
        context: (channel) => h.host.context(channel),
        whoami: () => h.host.whoami(),
        roster: (channel) => h.host.roster(channel),
      });
    })();
    return this.#log;
  }

  /** The log, if it was loaded (for closing). */
  loaded(): Promise<AuditLog> | undefined {
    return this.#log;
  }

  /** Queues an event of the burst being applied to `live`. */
  see(live: Live, event: SeenEvent["event"]): void {
    (live.audit ??= []).push({ epoch: live.engine.epoch(live.group), event });
  }

  /** Notes an applied commit: who came, who went, or this member's removal. */
  commit(live: Live, e: LogEntry, before: Member[], removed: boolean): void {
    if (!this.enabled) return;
    const time = new Date(e.time).toISOString();
    if (removed) {
      this.see(live, { type: "removed", seq: e.seq, time });
      return;
    }
    const after = live.engine.roster(live.group);
    const was = new Set(before.map((m) => m.did));
    const is = new Set(after.map((m) => m.did));
    const added = after.filter((m) => !was.has(m.did)).map((m) => m.did);
    const gone = before.filter((m) => !is.has(m.did)).map((m) => m.did);
    this.see(live, {
      type: "commit",
      seq: e.seq,
      time,
      added,
      removed: gone,
      rotation: added.length === 0 && gone.length === 0,
    });
  }

  /** Notes the metadata of a message this member is sending, until it is read back. */
  async noteSent(id: Uint8Array, tag: string, data: Uint8Array): Promise<void> {
    this.#sent.set(id.toHex(), { tag, size: data.length, sha256: await sha256Hex(data) });
    if (this.#sent.size > MAX_SENT_IDS) this.#sent.delete(this.#sent.keys().next().value!);
  }

  /** Notes one of this member's own messages, read back from the relay. */
  own(ctx: Ctx, live: Live, e: LogEntry, id: string): void {
    const noted = this.#sent.get(id);
    this.#sent.delete(id);
    if (!noted) return; // cover traffic, or sent before a restart: its body is not known here
    this.see(live, {
      type: "message",
      seq: e.seq,
      time: new Date(e.time).toISOString(),
      sender: memberOf(this.#h.identity, ctx.key.publicKey).did,
      ...noted,
    });
  }

  /** Starts a channel's log: this member created or joined it. */
  async start(
    channel: string,
    type: "created" | "joined",
    roster: Member[],
    epoch: number,
  ): Promise<void> {
    if (!this.enabled) return;
    await (await this.log()).append(channel, [{
      epoch,
      event: { type, time: new Date().toISOString(), members: roster.map((m) => m.did) },
    }]);
  }

  /** The channel's audit key, `skt_audit_…` (see `SkytaleChannelManager.exportAuditKey`). */
  async exportKey(channel: string): Promise<string> {
    this.#assertEnabled();
    const { encodeAuditKey } = await import("../audit/chain.ts");
    return encodeAuditKey(await (await this.log()).key(channel));
  }

  /** The channel's log, read back and verified (see `SkytaleChannelManager.auditReport`). */
  async report(channel: string): Promise<AuditReport> {
    this.#assertEnabled();
    const log = await this.log();
    await log.settled(channel);
    return await log.report(channel);
  }

  #assertEnabled(): void {
    if (!this.enabled) {
      throw new ValidationError(
        "invalid_argument",
        "This manager keeps no audit log: create it with { audit: true }",
      );
    }
  }
}
