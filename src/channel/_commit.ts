/**
 * Commits, ordered by the relay: one is built on the channel's current epoch,
 * saved as pending (so a crash settles it rather than forgets it), published,
 * and counted done only once it is read back applied; a nack means another
 * commit won the epoch, so the member catches up and builds again.
 *
 * @module
 */
import { InterruptedError, RelayError } from "../errors.ts";
import type { Group } from "../mls/engine.ts";
import type { RememberedWelcome } from "../store/types.ts";
import { logLine } from "../runtime/env.ts";
import { errorMessage, randomHex } from "../_util.ts";
import { assertActive, type Core, type Ctx, type Live, save, WAIT_MS, waitFor } from "./_live.ts";

const COMMIT_RETRIES = 20;

/** What a commit builder returns: the commit, the group it leads to, and the caller's result. */
export interface Built<T> {
  commit: Uint8Array;
  newGroup: Group;
  result: T;
  welcome?: RememberedWelcome;
}

/**
 * Builds a commit on the current epoch, publishes it and waits until it is
 * applied; on a nack, catches up and rebuilds. `onlyIfPending` commits only
 * when proposals wait; `reuse` returns an earlier result instead of committing.
 */
export function commit<T>(
  core: Core,
  ctx: Ctx,
  live: Live,
  build: (g: Group) => Promise<Built<T>>,
  onlyIfPending = false,
  reuse?: () => T | undefined,
): Promise<T | undefined> {
  return live.commitMutex.run(async () => {
    for (let attempt = 0; attempt < COMMIT_RETRIES; attempt++) {
      const built = await live.mutex.run(async () => {
        assertActive(core, live);
        const again = reuse?.();
        if (again !== undefined) return { again };
        if (onlyIfPending && live.engine.pendingProposals(live.group) === 0) return undefined;
        const b = await build(live.group);
        const id = randomHex(16);
        const epoch = live.engine.epoch(live.group);
        live.record.pending = {
          id,
          epoch,
          commit: b.commit,
          group: live.engine.encodeGroup(b.newGroup),
          welcome: b.welcome,
        };
        await save(ctx, live);
        return { ...b, id, epoch };
      });
      if (built === undefined) return undefined;
      if ("again" in built) return built.again;
      const acked = await publishPending(core, ctx, live, built.id, built.epoch, built.commit);
      if (acked) return built.result;
    }
    throw new RelayError(
      "stale_epoch",
      `Could not commit to "${live.record.channel}": the epoch kept moving after ${COMMIT_RETRIES} attempts`,
    );
  });
}

/** A commit that only moves the group on (a key update): no result, no Welcome. */
export function update(
  core: Core,
  ctx: Ctx,
  live: Live,
  make: (g: Group) => Promise<{ commit: Uint8Array; newGroup: Group }>,
  onlyIfPending = false,
): Promise<undefined> {
  return commit(core, ctx, live, async (g) => {
    const r = await make(g);
    return { commit: r.commit, newGroup: r.newGroup, result: undefined };
  }, onlyIfPending);
}

/** Publishes a persisted pending commit; true once applied, false after a nack (caught up). */
export async function publishPending(
  core: Core,
  ctx: Ctx,
  live: Live,
  id: string,
  epoch: number,
  commit: Uint8Array,
): Promise<boolean> {
  const res = await ctx.relay.publish(live.record.channel, {
    id: Uint8Array.fromHex(id),
    kind: "commit",
    epoch,
    payload: commit,
  });
  if (res.ok) {
    const seq = res.seq;
    if (!await waitFor(core, live, () => live.record.cursor >= seq, WAIT_MS)) {
      throw new InterruptedError(
        "timeout",
        `Commit to "${live.record.channel}" was accepted but not delivered back in time`,
      );
    }
    return true;
  }
  await live.mutex.run(async () => {
    if (live.record.pending?.id === id) {
      live.record.pending = undefined;
      await save(ctx, live);
    }
  });
  if (res.code !== "stale_epoch") {
    throw new RelayError(
      "relay_error",
      `Relay refused a commit to "${live.record.channel}": ${res.code}`,
    );
  }
  const target = res.epoch;
  logLine(
    `skytale: commit to "${live.record.channel}" at epoch ${epoch} was nacked (relay at ${target}); catching up to retry`,
  );
  await waitFor(core, live, () => live.engine.epoch(live.group) >= target, WAIT_MS);
  return false;
}

/** Commits received proposals soon, unless another member does first. */
export function scheduleCommitPending(core: Core, ctx: Ctx, live: Live): void {
  if (live.proposalTimer) return;
  // Spread members out a little so usually only one of them commits.
  const index = live.engine.members(live.group).indexOf(core.identity);
  live.proposalTimer = setTimeout(() => {
    live.proposalTimer = undefined;
    if (core.closed || !live.record.active) return;
    void update(core, ctx, live, (g) => live.engine.commitPending(g), true)
      .catch((e) => logLine(`skytale: committing proposals failed: ${errorMessage(e)}`));
  }, 20 + 50 * Math.max(0, index));
}

/** Settles a commit that was in flight when the process stopped (on start-up). */
export function settlePending(core: Core, ctx: Ctx, live: Live): void {
  const pending = live.record.pending;
  if (!live.record.active || !pending) return;
  // Settled before any other commit of this channel is built (a second one would replace it as
  // pending, and this one, read back, would then look like another member's).
  void live.commitMutex.run(() =>
    publishPending(core, ctx, live, pending.id, pending.epoch, pending.commit)
  ).catch((e) => logLine(`skytale: could not settle a pending commit: ${errorMessage(e)}`));
}
