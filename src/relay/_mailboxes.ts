/**
 * The relay server's mailbox frames (`mailboxPut`, `mailboxTake`,
 * `mailboxAck`) and the leases a connection holds: items a connection took
 * and did not ack go back to their mailbox when it closes.
 *
 * A session of an organisation reaches only that organisation's mailboxes:
 * the log keeps them under `<org>/<address>`.
 *
 * @module
 */
import { AuthError, ValidationError } from "../errors.ts";
import { ownsMailbox } from "./mailbox.ts";
import { DEFAULT_MAILBOX_LEASE_MS, type MailboxLease } from "./log/types.ts";
import { env } from "../runtime/env.ts";
import { type FrameOf, ID_BYTES, MAX_ACK_IDS, MAX_NAME_BYTES } from "./protocol.ts";
import type { Conn, RelayContext } from "./_conn.ts";
import type { Quotas } from "./_quotas.ts";

/** A `mailboxItems` frame's bytes before its items: version, type, request id, count. */
const MAILBOX_ITEMS_HEADER_BYTES = 1 + 1 + 4 + 4;

function _utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

function _checkAddress(address: string): void {
  if (address.length === 0 || _utf8Length(address) > MAX_NAME_BYTES) {
    throw new ValidationError(
      "invalid_argument",
      `Mailbox address must be 1 to ${MAX_NAME_BYTES} bytes, got ${_utf8Length(address)}`,
    );
  }
}

/**
 * Where the log keeps a mailbox: an org-scoped session's addresses live in
 * its org's namespace (`<org>/<address>`), so sessions of another org never
 * reach them; sessions without an org (a relay without auth) share one.
 * Org names hold no `/`, so no two orgs' names meet.
 */
function _box(c: Conn, address: string): string {
  const org = c.session?.org;
  return org === undefined ? address : `${org}/${address}`;
}

/**
 * Refuses a take or ack that does not carry the mailbox's take key: a key
 * whose SHA-256 (hex) ends the address. Putters need only the address.
 */
async function _checkOwner(address: string, key: Uint8Array | undefined): Promise<void> {
  if (key === undefined) {
    throw new AuthError(
      `Mailbox "${address}" can only be taken from or acked with its take key: upgrade the client`,
    );
  }
  if (!await ownsMailbox(address, key)) {
    throw new AuthError(`The take key does not own mailbox "${address}"`);
  }
}

/** The mailbox lease in force: the option, else the environment variable, else 30 s. */
function _leaseMs(opt: number | undefined): number {
  const raw = opt ?? env("SKYTALE_RELAY_MAILBOX_LEASE_MS");
  if (raw === undefined) return DEFAULT_MAILBOX_LEASE_MS;
  const ms = Number(raw);
  if (!Number.isSafeInteger(ms) || ms < 1) {
    throw new ValidationError(
      "invalid_argument",
      `The mailbox lease must be a whole number of milliseconds of at least 1, got ${
        typeof raw === "string" ? `"${raw}" (SKYTALE_RELAY_MAILBOX_LEASE_MS)` : raw
      }`,
    );
  }
  return ms;
}

/** Mailbox frames of one relay server. */
export class Mailboxes {
  readonly #ctx: RelayContext;
  readonly #quotas: Quotas;
  readonly #leaseMs: number;
  /** Lease releases under way (awaited by `close`, before the log closes). */
  readonly #releases = new Set<Promise<void>>();

  /**
   * Creates it.
   *
   * @param ctx The log, limits and how to answer.
   * @param quotas The rate limits puts count against.
   * @param leaseMs How long a take leases its items (see `RelayServerOptions.mailboxLeaseMs`).
   * @throws {ValidationError} `invalid_argument` for a lease that is no whole number of ms >= 1.
   */
  constructor(ctx: RelayContext, quotas: Quotas, leaseMs: number | undefined) {
    this.#ctx = ctx;
    this.#quotas = quotas;
    this.#leaseMs = _leaseMs(leaseMs);
  }

  /**
   * Gives back what a closing connection took and did not ack: its answer may
   * never have arrived, and a client that reconnects takes it again.
   *
   * @param c The connection.
   */
  releaseAll(c: Conn): void {
    for (const [address, leases] of c.leases) this.#release(address, [...leases.values()]);
    c.leases.clear();
  }

  /** Waits for the releases under way (before the log closes). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#releases]);
  }

  #release(address: string, leases: MailboxLease[]): void {
    if (leases.length === 0) return;
    // Async, so a log that throws at once (a closed one) rejects instead of throwing here.
    const p = (async () => await this.#ctx.log.mailboxRelease(address, leases))().catch((e) => {
      // The lease then simply lapses.
      this.#ctx.logger("debug", "releasing mailbox leases failed", { error: String(e) });
    });
    this.#releases.add(p);
    void p.finally(() => this.#releases.delete(p));
  }

  /**
   * Stores one item (its TTL capped by the limit).
   *
   * @param c The connection.
   * @param f The frame.
   */
  async put(c: Conn, f: FrameOf<"mailboxPut">): Promise<void> {
    _checkAddress(f.address);
    if (f.ttl < 1) {
      return this.#ctx.error(
        c,
        f.reqId,
        "invalid_argument",
        `Mailbox TTL must be at least 1 second, got ${f.ttl}`,
      );
    }
    if (!this.#quotas.takePublish(c, f.reqId)) return;
    const ttl = Math.min(f.ttl, this.#ctx.limits.maxMailboxTtlSeconds);
    const expires = this.#ctx.now() + ttl * 1000;
    await this.#ctx.log.mailboxPut(_box(c, f.address), f.id, f.payload, expires);
    this.#ctx.metrics.mailboxPuts++;
    this.#ctx.send(c, { type: "ok", reqId: f.reqId });
  }

  /**
   * Leases and sends one page of items.
   *
   * @param c The connection.
   * @param f The frame.
   */
  async take(c: Conn, f: FrameOf<"mailboxTake">): Promise<void> {
    _checkAddress(f.address);
    await _checkOwner(f.address, f.key);
    const box = _box(c, f.address);
    // One page: as many items, oldest first, as fit one frame under the limit (at least one).
    // The client takes again until a take comes back empty; the rest stays unleased till then.
    const items = await this.#ctx.log.mailboxTake(box, this.#ctx.now(), this.#leaseMs, {
      maxBytes: this.#ctx.limits.maxFrameBytes - MAILBOX_ITEMS_HEADER_BYTES,
      perItemBytes: ID_BYTES + 4,
    });
    this.#ctx.metrics.mailboxTakes++;
    const leases: MailboxLease[] = [];
    for (const i of items) if (i.lease !== undefined) leases.push({ id: i.id, lease: i.lease });
    if (c.closed) {
      // The connection went away while the log leased them: the answer cannot be sent.
      return this.#release(box, leases);
    }
    let held = c.leases.get(box);
    if (!held && leases.length > 0) c.leases.set(box, held = new Map());
    for (const l of leases) held!.set(l.id.toHex(), l);
    this.#ctx.send(c, {
      type: "mailboxItems",
      reqId: f.reqId,
      items: items.map((i) => ({ id: i.id, payload: i.payload })),
    });
  }

  /**
   * Deletes acked items.
   *
   * @param c The connection.
   * @param f The frame.
   */
  async ack(c: Conn, f: FrameOf<"mailboxAck">): Promise<void> {
    _checkAddress(f.address);
    if (f.ids.length === 0 || f.ids.length > MAX_ACK_IDS) {
      return this.#ctx.error(
        c,
        f.reqId,
        "invalid_argument",
        `A mailbox ack must name 1 to ${MAX_ACK_IDS} item ids, got ${f.ids.length}`,
      );
    }
    await _checkOwner(f.address, f.key);
    const box = _box(c, f.address);
    // Forget the leases first: if the connection closes meanwhile, they are not released.
    const held = c.leases.get(box);
    if (held) {
      for (const id of f.ids) held.delete(id.toHex());
      if (held.size === 0) c.leases.delete(box);
    }
    await this.#ctx.log.mailboxAck(box, f.ids);
    this.#ctx.metrics.mailboxAcks += f.ids.length;
    this.#ctx.send(c, { type: "ok", reqId: f.reqId });
  }
}
