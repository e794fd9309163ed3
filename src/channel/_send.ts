/**
 * The send path: encrypting queued plaintexts in passes, reserving their
 * generations in the journal first so no key or nonce is ever used twice (not
 * even after a crash), and the cover traffic that hides when a channel is
 * busy, and the padding that hides how long a message is.
 * `SkytaleChannelManager.sendTagged` publishes what `seal` makes.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";
import { errorMessage } from "../_util.ts";
import { probes, Stages } from "../_probe.ts";
import {
  assertActive,
  type Core,
  type Ctx,
  type Live,
  type Outgoing,
  remember,
  type Sealed,
} from "./_live.ts";
import { Tags } from "./envelope.ts";
import { DEFAULT_PADDING_BUCKETS, type SkytaleOptions } from "./types.ts";
import { ValidationError } from "../errors.ts";

/** The padded size of a message of `n` bytes: the smallest bucket at or above it. */
function bucketOf(buckets: readonly number[], n: number): number {
  for (const b of buckets) if (b >= n) return b;
  const top = buckets[buckets.length - 1]!;
  return Math.ceil(n / top) * top;
}

/**
 * The padding of `SkytaleOptions.padding`, checked.
 *
 * @throws {ValidationError} `invalid_argument` unless the buckets increase from at least 64.
 */
export function padding(option: SkytaleOptions["padding"]): { pad?: (length: number) => number } {
  const buckets = option === undefined ? DEFAULT_PADDING_BUCKETS : option;
  if (buckets === false) return {};
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
  return { pad: (n) => bucketOf(buckets, n) };
}

/**
 * Application generations reserved per journal write: a crash skips at most
 * this many (plus those of the pass under way), well inside the 200 a receiver
 * ratchets forward.
 */
const RESERVE_AHEAD = 64;

/**
 * Encrypts a plaintext for sending. Sends that queue up while the channel is
 * busy are encrypted together in one pass. No key or nonce is ever used
 * twice, even after a crash: before a generation is used, the journal
 * durably reserves it (with the next `RESERVE_AHEAD`), and a restarted member
 * skips every reserved generation. So a burst costs one small fsync per
 * `RESERVE_AHEAD` messages, not a rewrite of the group per pass.
 */
export function seal(
  core: Core,
  ctx: Ctx,
  live: Live,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Promise<Sealed> {
  return new Promise((resolve, reject) => {
    live.outbox.push({ plaintext, aad, resolve, reject });
    if (live.outbox.length > 1) return; // a pass is already queued and will take it
    void live.mutex.run(() => sealPass(core, ctx, live));
  });
}

/** One pass of {@linkcode seal}: encrypts what the outbox holds (at most RESERVE_AHEAD). */
async function sealPass(core: Core, ctx: Ctx, live: Live): Promise<void> {
  // At most RESERVE_AHEAD per pass, so a crash never skips more than a receiver takes.
  const items = live.outbox.splice(0, RESERVE_AHEAD);
  if (live.outbox.length > 0) {
    const rest = live.outbox;
    live.outbox = [];
    for (const r of rest) {
      void seal(core, ctx, live, r.plaintext, r.aad).then(r.resolve, r.reject);
    }
  }
  const sealed: [Outgoing, Sealed][] = [];
  try {
    assertActive(core, live);
    await reserve(ctx, live, items.length);
    const reservedAt = probes.sink ? performance.now() : 0;
    for (const item of items) {
      try {
        const r = await live.engine.encrypt(live.group, item.plaintext, {
          ...core.pad,
          aad: item.aad,
        });
        live.group = r.newGroup;
        const id = new Uint8Array(16);
        id.set(live.ownTag);
        crypto.getRandomValues(id.subarray(8));
        remember(live, id);
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
}

/**
 * Makes sure the next `n` send generations are durably reserved in the
 * journal. Once fewer than half a block is left, the next block is reserved in
 * the background, so that a member sending one message at a time never waits
 * for that fsync (it was 1 send in 64 on the latency path).
 *
 * Crash safety: a send uses only generations below `live.reserved.gen`, and
 * `live.reserved` only ever names a reservation that is durable in the
 * journal as it is now. The background one is adopted once its fsync is done,
 * and only if the journal was not cleared since it began (`journalEra`; a
 * clearing happens in a durable save, under the mutex that this pass holds
 * when it starts one). A line written but not adopted only makes a restarted
 * member skip further ahead, as any reservation does.
 */
async function reserve(ctx: Ctx, live: Live, n: number): Promise<void> {
  const epoch = live.engine.epoch(live.group);
  const next = live.engine.sendGeneration(live.group);
  const r = live.reserved;
  if (r && r.epoch === epoch && next + n <= r.gen) {
    if (r.gen - next - n < RESERVE_AHEAD / 2 && !live.reserving) {
      reserveAhead(ctx, live, { epoch, gen: next + n + RESERVE_AHEAD });
    }
    return;
  }
  if (live.reserving) {
    await live.reserving;
    return await reserve(ctx, live, n);
  }
  const reserved = { epoch, gen: next + n + RESERVE_AHEAD };
  await ctx.store.appendJournal(live.record.channel, { reserve: reserved }, { durable: true });
  live.reserved = reserved;
}

/** Reserves the next block without waiting for it (see {@linkcode reserve}). */
function reserveAhead(ctx: Ctx, live: Live, next: { epoch: number; gen: number }): void {
  const era = live.journalEra;
  live.reserving = ctx.store.appendJournal(live.record.channel, { reserve: next }, {
    durable: true,
  }).then(() => {
    const r = live.reserved;
    const newer = !r || r.epoch < next.epoch || (r.epoch === next.epoch && r.gen < next.gen);
    if (live.journalEra === era && newer) live.reserved = next;
  }, (e) => {
    // The next send reserves in line and meets the same error itself.
    logLine(`skytale: reserving ahead on "${live.record.channel}" failed: ${errorMessage(e)}`);
  }).finally(() => {
    live.reserving = undefined;
  });
}

/**
 * Sends cover messages on a channel while it is open (see
 * `SkytaleOptions.coverTraffic`): an empty chat body, which no application
 * ever sends, so members know to drop it.
 */
export function scheduleCover(core: Core, live: Live): void {
  const mean = core.opts.coverTraffic?.meanIntervalMs;
  if (mean === undefined || live.coverTimer !== undefined) return;
  const next = () => {
    const delay = -Math.log(1 - Math.random()) * mean; // exponential: a Poisson process
    live.coverTimer = setTimeout(async () => {
      live.coverTimer = undefined;
      if (core.closed || !live.record.active) return;
      try {
        await core.host.sendTagged(live.record.channel, Tags.chat, new Uint8Array(0));
        core.cover.sent++;
      } catch (e) {
        logLine(`skytale: cover message to "${live.record.channel}" failed: ${errorMessage(e)}`);
      }
      if (!core.closed && live.record.active) next();
    }, Math.min(delay, 0x7fff_ffff));
    (live.coverTimer as { unref?: () => void }).unref?.();
  };
  next();
}
