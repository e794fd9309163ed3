/**
 * The relay's commit gate: for each channel created with a genesis GroupInfo,
 * a {@linkcode GroupObserver} follows the commits the log holds, and a new
 * commit is appended only after it validates against it. Commits of one
 * channel pass the gate one at a time, so the observer and the log never
 * disagree about which commit took an epoch; relays sharing a log (NATS) catch
 * up from the log before they check.
 *
 * @module
 */
import { GroupObserver, Refusal } from "./_group.ts";
import type { AppendResult, LogEntry, RelayLog } from "./log/types.ts";
import { SerialQueue } from "./_serial.ts";

export { Refusal } from "./_group.ts";

interface _View {
  /** `undefined`: a channel created without a genesis; its commits are not validated. */
  obs: GroupObserver | undefined;
  /**
   * The log had an entry at seq 1 when the view was made: a channel without a genesis then
   * stays without one. An empty channel is looked at again (its genesis may be on its way).
   */
  settled: boolean;
}

/** Validates commits before the log sequences them. */
export class CommitGate {
  readonly #log: RelayLog;
  readonly #views = new Map<string, _View>();
  readonly #serial = new SerialQueue();

  /**
   * @param log The relay's log.
   */
  constructor(log: RelayLog) {
    this.#log = log;
  }

  /**
   * Checks a creator's GroupInfo; on success the channel's later commits are validated.
   *
   * @param channel The channel.
   * @param genesis The MLSMessage-encoded GroupInfo at epoch 0.
   * @returns A refusal, or `undefined` if it is a valid genesis.
   */
  async checkGenesis(channel: string, genesis: Uint8Array): Promise<Refusal | undefined> {
    const obs = await GroupObserver.genesis(channel, genesis);
    return obs instanceof Refusal ? obs : undefined;
  }

  /**
   * The current members of a channel, caught up with the log.
   *
   * @param channel The channel.
   * @returns A test for a raw signature public key, or `undefined` for a
   *   channel whose membership the relay does not know (created without a genesis).
   */
  async members(channel: string): Promise<((publicKey: Uint8Array) => boolean) | undefined> {
    return await this.#serial.run(channel, async () => {
      const obs = (await this.#view(channel)).obs;
      return obs === undefined ? undefined : (k) => obs.isMember(k);
    });
  }

  /**
   * The epoch this relay last saw a validated channel at, without reading the log.
   *
   * @param channel The channel.
   * @returns The epoch, or `undefined` if the channel is not loaded or not validated.
   */
  knownEpoch(channel: string): number | undefined {
    return this.#views.get(channel)?.obs?.epoch;
  }

  /**
   * Whether a channel is known, without reading the log, to be one the relay
   * does not validate (created without a genesis).
   *
   * @param channel The channel.
   * @returns True only for a loaded channel without a genesis.
   */
  knownOpen(channel: string): boolean {
    const v = this.#views.get(channel);
    return v !== undefined && v.obs === undefined && v.settled;
  }

  /**
   * Validates a commit and appends it through `append`, one commit of a
   * channel at a time.
   *
   * @param channel The channel.
   * @param epoch The epoch the commit says it was built on.
   * @param payload The commit.
   * @param append Appends it to the log.
   * @returns The log's answer, or a refusal.
   */
  async commit(
    channel: string,
    epoch: number,
    payload: Uint8Array,
    append: () => Promise<AppendResult>,
  ): Promise<AppendResult | Refusal> {
    return await this.#serial.run(channel, async () => {
      const v = await this.#view(channel);
      // A stale epoch may be a retry of a commit the log holds: the log answers it.
      if (v.obs === undefined || epoch !== v.obs.epoch) return await append();
      const next = await v.obs.check(payload);
      if (next instanceof Refusal) return next;
      const r = await append();
      if (r.ok && r.epoch === epoch + 1) v.obs.adopt(next);
      else this.#views.delete(channel); // another relay moved on: catch up next time
      return r;
    });
  }

  /** Forgets a channel's view (e.g. the relay lost its log's state). */
  forget(channel: string): void {
    this.#views.delete(channel);
  }

  async #view(channel: string): Promise<_View> {
    let v = this.#views.get(channel);
    if (v === undefined || (v.obs === undefined && !v.settled)) {
      const first = await this.#log.read(channel, 1, 1);
      const g = first[0]?.seq === 1 && first[0].kind === "genesis" ? first[0] : undefined;
      const obs = g ? await GroupObserver.genesis(channel, g.payload) : undefined;
      v = { obs: obs instanceof GroupObserver ? obs : undefined, settled: first.length > 0 };
      this.#views.set(channel, v);
    }
    if (v.obs !== undefined) await this.#catchUp(channel, v.obs);
    return v;
  }

  /** Applies the commits the log sequenced since the observer's epoch (other relays'). */
  async #catchUp(channel: string, obs: GroupObserver): Promise<void> {
    const info = await this.#log.info(channel);
    while (info !== undefined && obs.epoch < info.epoch) {
      const at = await this.#log.firstSeqOfEpoch(channel, obs.epoch + 1) - 1;
      const [e]: LogEntry[] = await this.#log.read(channel, at, 1);
      if (e === undefined || e.kind !== "commit" || e.epoch !== obs.epoch) break;
      const next = await obs.check(e.payload);
      if (next instanceof Refusal) break;
      obs.adopt(next);
    }
  }
}
