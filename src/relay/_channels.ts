/**
 * The relay server's channel frames: `create` (with a genesis, and the
 * organisation's channel quota), `subscribe`/`unsubscribe`, and `publish`
 * (rate limits, membership, commits through the commit gate, then ack and
 * fan-out).
 *
 * @module
 */
import { probes, Stages } from "../_probe.ts";
import { sha256 } from "../_util.ts";
import type { AppendResult } from "./log/types.ts";
import type { FrameOf } from "./protocol.ts";
import { type CommitGate, Refusal } from "./_commits.ts";
import type { Conn, RelayContext } from "./_conn.ts";
import type { FanOut } from "./_fanout.ts";
import { checkChannel, type Membership } from "./_membership.ts";
import type { Quotas } from "./_quotas.ts";

/** What {@linkcode Channels} works with. */
export interface ChannelParts {
  ctx: RelayContext;
  gate: CommitGate;
  fanOut: FanOut;
  quotas: Quotas;
  membership: Membership;
  /** Answers a frame whose handling failed (for publishes answered after the next frame began). */
  failed(c: Conn, f: FrameOf<"publish">, e: unknown): void;
}

/** Channel frames of one relay server. */
export class Channels {
  readonly #p: ChannelParts;
  readonly #ctx: RelayContext;

  /**
   * Creates it.
   *
   * @param parts The server's parts.
   */
  constructor(parts: ChannelParts) {
    this.#p = parts;
    this.#ctx = parts.ctx;
  }

  /**
   * Creates a channel (its genesis checked and stored as seq 1).
   *
   * @param c The connection.
   * @param f The frame.
   */
  async create(c: Conn, f: FrameOf<"create">): Promise<void> {
    checkChannel(c, f.channel);
    if (f.genesis !== undefined) {
      const refused = await this.#p.gate.checkGenesis(f.channel, f.genesis);
      if (refused) {
        this.#ctx.logger("warn", "refused a channel's genesis", {
          channel: f.channel,
          reason: refused.reason,
          remote: c.ws.remote,
        });
        const msg = `Cannot create "${f.channel}": ${refused.reason}`;
        return this.#ctx.error(c, f.reqId, "refused", msg);
      }
    }
    // Reserve a place in the org's channel quota before creating, so concurrent creates
    // cannot overshoot it; give it back when the channel existed already.
    const org = c.session?.org === undefined ? undefined : this.#p.quotas.org(c.session.org);
    if (org && org.channels >= this.#ctx.limits.maxChannelsPerOrg) {
      if (await this.#ctx.log.info(f.channel) === undefined) {
        return this.#ctx.limitError(
          c,
          f.reqId,
          "channels_per_org",
          `Cannot create "${f.channel}": organisation "${c.session!.org}" has created ` +
            `${org.channels} channels on this relay, the limit (--max-channels-per-org)`,
        );
      }
      return this.#ctx.send(c, { type: "created", reqId: f.reqId, created: false });
    }
    if (org) org.channels++;
    let created: boolean;
    try {
      created = await this.#ctx.log.create(f.channel);
    } catch (e) {
      if (org) org.channels--;
      throw e;
    }
    if (org && !created) org.channels--;
    if (created && f.genesis !== undefined) await this.#storeGenesis(f.channel, f.genesis);
    this.#ctx.send(c, { type: "created", reqId: f.reqId, created });
  }

  /** Seq 1: the public state every later commit is validated against. */
  async #storeGenesis(channel: string, genesis: Uint8Array): Promise<void> {
    const id = await sha256(genesis);
    await this.#ctx.log.append(channel, {
      id: id.subarray(0, 16),
      kind: "genesis",
      epoch: 0,
      payload: genesis,
      time: this.#ctx.now(),
    });
    this.#p.gate.forget(channel);
  }

  /**
   * Subscribes the connection to a channel.
   *
   * @param c The connection.
   * @param f The frame.
   */
  async subscribe(c: Conn, f: FrameOf<"subscribe">): Promise<void> {
    checkChannel(c, f.channel);
    const { membership, fanOut } = this.#p;
    if (!await membership.mayUse(c, f.channel)) {
      return membership.notMember(c, f.reqId, f.channel, "read");
    }
    const max = this.#ctx.limits.maxChannelsPerConnection;
    if (!c.subs.has(f.channel) && c.subs.size >= max) {
      return this.#ctx.limitError(
        c,
        f.reqId,
        "channels_per_connection",
        `Cannot subscribe to "${f.channel}": this connection already has ${c.subs.size} subscriptions, the limit`,
      );
    }
    // Watch before reading the head, so nothing appended elsewhere falls between.
    await fanOut.watch(f.channel);
    const info = await this.#ctx.log.info(f.channel);
    if (!info) {
      fanOut.unwatchIfUnused(f.channel);
      return this.#ctx.error(c, f.reqId, "unknown_channel", `Unknown channel "${f.channel}"`);
    }
    const fromSeq = "seq" in f.from
      ? Math.max(1, f.from.seq)
      : await this.#ctx.log.firstSeqOfEpoch(f.channel, f.from.epoch);
    if (c.closed) return;
    fanOut.add(c, f.channel, fromSeq, info.head, () =>
      this.#ctx.send(c, {
        type: "subscribed",
        reqId: f.reqId,
        fromSeq,
        head: info.head,
        epoch: info.epoch,
      }));
  }

  /**
   * Ends the connection's subscription to a channel (if any).
   *
   * @param c The connection.
   * @param f The frame.
   */
  unsubscribe(c: Conn, f: FrameOf<"unsubscribe">): void {
    const s = c.subs.get(f.channel);
    if (s) {
      c.subs.delete(f.channel);
      this.#p.fanOut.drop(s);
    }
    this.#ctx.send(c, { type: "ok", reqId: f.reqId });
  }

  /**
   * Appends an entry (a commit through the commit gate), acks and fans it out.
   *
   * @param c The connection.
   * @param f The frame.
   */
  async publish(c: Conn, f: FrameOf<"publish">): Promise<void> {
    checkChannel(c, f.channel);
    if (!this.#p.quotas.takePublish(c, f.reqId)) return;
    if (f.kind === "genesis") {
      const msg = "A genesis is given with create, not published";
      return this.#ctx.error(c, f.reqId, "invalid_argument", msg);
    }
    if (!await this.#p.membership.mayUse(c, f.channel)) {
      return this.#p.membership.notMember(c, f.reqId, f.channel, "publish to");
    }
    const time = this.#ctx.now();
    const t0 = performance.now();
    probes.sink?.(Stages.relayReceived, f.id, t0);
    const log = this.#ctx.log;
    const append = () =>
      log.append(f.channel, { id: f.id, kind: f.kind, epoch: f.epoch, payload: f.payload, time });
    if (f.kind === "commit") {
      // Commits pass the gate one at a time and the connection waits for each.
      const r = await this.#p.gate.commit(f.channel, f.epoch, f.payload, append);
      return this.#published(c, f, time, t0, r);
    }
    const appended = append();
    if (!log.sequencesOnCall) return this.#published(c, f, time, t0, await appended);
    // The log has fixed the entry's place: the connection's next frame may start now, and
    // many of its publishes share one write. Appends settle in call order, so acks keep it.
    const done = appended.then(
      (r) => this.#published(c, f, time, t0, r),
      (e) => this.#p.failed(c, f, e),
    );
    c.acks = c.acks.then(() => done);
  }

  /** Answers a publish once the log (or the commit gate) has settled it, and fans it out. */
  #published(
    c: Conn,
    f: FrameOf<"publish">,
    time: number,
    t0: number,
    r: AppendResult | Refusal,
  ): void {
    const m = this.#ctx.metrics;
    this.#ctx.observeAppend((performance.now() - t0) / 1000);
    if (r instanceof Refusal) {
      m.nacked++;
      this.#ctx.logger("warn", "refused a commit", {
        channel: f.channel,
        epoch: f.epoch,
        reason: r.reason,
        remote: c.ws.remote,
      });
      return this.#ctx.error(
        c,
        f.reqId,
        "refused",
        `Commit to "${f.channel}" refused: ${r.reason}`,
      );
    }
    if (!r.ok) {
      m.nacked++;
      return this.#ctx.send(c, { type: "nack", reqId: f.reqId, code: r.code, epoch: r.epoch });
    }
    probes.sink?.(Stages.relayStored, f.id);
    m.acks++;
    this.#ctx.send(c, { type: "ack", reqId: f.reqId, seq: r.seq, epoch: r.epoch });
    if (r.seq > this.#p.fanOut.head(f.channel)) {
      m.published++;
      const { id, kind, epoch, payload } = f;
      this.#p.fanOut.fanOut(f.channel, { seq: r.seq, epoch, kind, id, time, payload });
      probes.sink?.(Stages.relayFannedOut, f.id);
    }
  }
}
