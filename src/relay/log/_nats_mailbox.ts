/**
 * The mailboxes of {@linkcode NatsLog}: stream `SKYTALE_MB`, subject
 * `skytale.mb.<h(address)>`, msg id `<h>.<item id>`, expiry in a header.
 * Each item (stream seq S) has a claim subject `skytale.mb.<h>.c.<S>` whose
 * last message is its lease: header `Sky-Lease-Until` (ms since the Unix
 * epoch; 0 = released).
 *
 * `take` reads the subject and takes each item whose claim subject is empty
 * or holds a lapsed lease by publishing a new claim with expected last
 * subject sequence = the claim it read (0 for none): of relays taking at once
 * exactly one wins, so an item is never handed out twice while leased.
 * `release` publishes a lapsed claim the same way, so it fails harmlessly
 * once another take holds the item. `ack` deletes the item, then purges its
 * claim subject (in that order: a take never finds a claimable acked item).
 * Expired items are deleted by takes; the rest age out with the stream's
 * 30-day limit. Leases compare each relay's clock with the claimant's, so
 * relay clocks should agree to well within a lease.
 *
 * @module
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import { directGet, directScan, isNotFound, isWrongLast } from "../_nats.ts";
import { fromHex } from "../../validate.ts";
import type { MailboxEntry, MailboxLease, MailboxPage } from "./types.ts";
import { PageBudget } from "./_shared.ts";
import type { SerialQueue } from "../_serial.ts";
import { nameHash } from "./_nats_layout.ts";

/** Mailboxes in one JetStream stream, shared by every relay. */
export class NatsMailboxes {
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #p: string;
  readonly #stream: string;
  readonly #serial: SerialQueue;

  /**
   * Creates it.
   *
   * @param js The JetStream client.
   * @param jsm The JetStream manager.
   * @param prefix The subject prefix (the stream is its upper case + `_MB`).
   * @param serial Runs one operation per address at a time.
   */
  constructor(js: JetStreamClient, jsm: JetStreamManager, prefix: string, serial: SerialQueue) {
    this.#js = js;
    this.#jsm = jsm;
    this.#p = prefix;
    this.#stream = `${prefix.toUpperCase()}_MB`;
    this.#serial = serial;
  }

  async #subject(address: string): Promise<string> {
    return `${this.#p}.mb.${await nameHash(address)}`;
  }

  /**
   * Queues a blob for an address.
   *
   * @param address The mailbox address.
   * @param id The item id.
   * @param payload The blob.
   * @param expiresAt Expiry, ms since the Unix epoch.
   */
  async put(
    address: string,
    id: Uint8Array,
    payload: Uint8Array,
    expiresAt: number,
  ): Promise<void> {
    const h = await nameHash(address);
    const hd = natsHeaders();
    hd.set("Sky-Expires", String(expiresAt));
    hd.set("Sky-Id", id.toHex());
    await this.#js.publish(`${this.#p}.mb.${h}`, payload, {
      msgID: `${h}.${id.toHex()}`,
      headers: hd,
    });
  }

  /**
   * Leases and returns the unexpired blobs of an address that no lease holds,
   * and deletes its expired ones.
   *
   * @param address The mailbox address.
   * @param now Now, ms since the Unix epoch.
   * @param leaseMs How long the lease lasts.
   * @param page How many fit one answer.
   * @returns The items, oldest first.
   */
  take(
    address: string,
    now: number,
    leaseMs: number,
    page?: MailboxPage,
  ): Promise<MailboxEntry[]> {
    return this.#serial.run(`mb:${address}`, async () => {
      const subject = await this.#subject(address);
      const out: MailboxEntry[] = [];
      const seen = new Set<string>();
      const expired: number[] = [];
      const budget = new PageBudget(page);
      for await (const m of this.#items(subject)) {
        const idHex = m.header?.get("Sky-Id") ?? "";
        if (!(Number(m.header?.get("Sky-Expires")) > now)) {
          expired.push(m.seq);
          continue;
        }
        // A later copy of an id (a put repeated after the de-duplication window) waits for
        // the first, as a repeated put does in the other logs.
        if (seen.has(idHex)) continue;
        seen.add(idHex);
        // Full: the rest waits for the next take (expired ones after it are dropped then).
        if (!budget.fits(m.data.length)) break;
        const lease = await this.#lease(subject, m.seq, now, now + leaseMs);
        if (lease !== undefined) {
          budget.add(m.data.length);
          out.push({ id: fromHex(idHex, "mailbox id"), payload: m.data, lease });
        }
      }
      for (const seq of expired) await this.#dropItem(subject, seq);
      return out;
    });
  }

  /**
   * Deletes items for good, on every relay.
   *
   * @param address The mailbox address.
   * @param ids The item ids.
   * @returns How many were deleted.
   */
  ack(address: string, ids: readonly Uint8Array[]): Promise<number> {
    return this.#serial.run(`mb:${address}`, async () => {
      const subject = await this.#subject(address);
      const want = new Set(ids.map((id) => id.toHex()));
      let n = 0;
      for await (const m of this.#items(subject)) {
        if (!want.has(m.header?.get("Sky-Id") ?? "")) continue;
        if (await this.#dropItem(subject, m.seq)) n++;
      }
      return n;
    });
  }

  /**
   * Ends leases early, unless another take holds the item since or it was acked.
   *
   * @param address The mailbox address.
   * @param leases The items and their leases.
   */
  release(address: string, leases: readonly MailboxLease[]): Promise<void> {
    return this.#serial.run(`mb:${address}`, async () => {
      const subject = await this.#subject(address);
      for (const l of leases) {
        const m = /^(\d+)\.(\d+)$/.exec(l.lease);
        if (m) await this.#publishClaim(`${subject}.c.${m[1]}`, 0, Number(m[2]));
      }
    });
  }

  /** The item messages of a mailbox subject, oldest first. */
  #items(subject: string): AsyncGenerator<StoredMsg> {
    return directScan(this.#jsm, this.#stream, subject);
  }

  /**
   * Leases the item at stream seq `itemSeq` until `until`, unless a lease that
   * has not lapsed by `now` holds it.
   *
   * @returns The lease (`<item seq>.<claim seq>`), or `undefined` if another holds it.
   */
  async #lease(
    subject: string,
    itemSeq: number,
    now: number,
    until: number,
  ): Promise<string | undefined> {
    const claimSubject = `${subject}.c.${itemSeq}`;
    const last = await directGet(this.#jsm, this.#stream, { last_by_subj: claimSubject });
    // A claim without a lease header (an older relay's, whose take then purged the item)
    // counts as lapsed.
    if (Number(last?.header?.get("Sky-Lease-Until") ?? 0) > now) return undefined;
    const seq = await this.#publishClaim(claimSubject, until, last?.seq ?? 0);
    return seq === undefined ? undefined : `${itemSeq}.${seq}`;
  }

  /**
   * Publishes a claim (a lease until `until`; 0 releases) if the claim
   * subject's last message is still the one at `expectSeq` (0: none). Of
   * relays publishing after the same message exactly one succeeds, so two
   * relays taking one address at once never both hold an item.
   *
   * @returns The new claim's stream seq, or `undefined` if another claim came first.
   */
  async #publishClaim(
    claimSubject: string,
    until: number,
    expectSeq: number,
  ): Promise<number | undefined> {
    const hd = natsHeaders();
    hd.set("Sky-Lease-Until", String(until));
    try {
      const ack = await this.#js.publish(claimSubject, new Uint8Array(0), {
        headers: hd,
        expect: { lastSubjectSequence: expectSeq },
      });
      return ack.seq;
    } catch (e) {
      if (isWrongLast(e)) return undefined;
      throw e;
    }
  }

  /** Deletes an item message and then its claims; true if this call deleted the item. */
  async #dropItem(subject: string, itemSeq: number): Promise<boolean> {
    let deleted = false;
    try {
      deleted = await this.#jsm.streams.deleteMessage(this.#stream, itemSeq, false);
    } catch (e) {
      if (!isNotFound(e)) throw e; // another relay deleted it first
    }
    await this.#jsm.streams.purge(this.#stream, { filter: `${subject}.c.${itemSeq}` });
    return deleted;
  }
}
