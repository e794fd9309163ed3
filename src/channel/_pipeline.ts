/**
 * The receive pipeline: a channel's subscription hands each burst of relay
 * entries to {@linkcode onEntries}, which applies them in seq order under the
 * channel's mutex (commits move the group on, messages are decrypted into the
 * buffer or queued for their layer's handlers), persists once per burst, and
 * only then hands anything out. This is the per-message hot path.
 *
 * @module
 */
import { CryptoError, RelayError, ValidationError } from "../errors.ts";
import type { MlsEngine } from "../mls/engine.ts";
import type { LogEntry } from "../relay/log/types.ts";
import type { PendingCommit, StoredMessage } from "../store/types.ts";
import { logLine } from "../runtime/env.ts";
import { errorMessage, sha256Hex } from "../_util.ts";
import { probes, Stages } from "../_probe.ts";
import { type Core, type Ctx, type Live, notify, pin, RECENT, snapshotLater } from "./_live.ts";
import { scheduleCommitPending } from "./_commit.ts";
import { announce, drain, emitMembership } from "./_delivery.ts";
import { scheduleCover } from "./_send.ts";
import { fromUtf8, openTagged, Tags } from "./envelope.ts";
import type { TaggedData } from "./types.ts";

type Processed = Awaited<ReturnType<MlsEngine["process"]>>;

/** Subscribes a channel from where its record stopped, and starts its cover traffic. */
export async function subscribe(core: Core, ctx: Ctx, live: Live): Promise<void> {
  scheduleCover(core, live);
  const from = live.record.cursor > 0
    ? { seq: live.record.cursor + 1 }
    : { epoch: live.engine.epoch(live.group) };
  try {
    await ctx.relay.subscribeBatch(
      live.record.channel,
      from,
      (es) => onEntries(core, ctx, live, es),
    );
  } catch (e) {
    if (!(e instanceof ValidationError && e.code === "unknown_channel")) throw e;
    // This identity has the channel, the relay does not: two relays (or two SKYTALE_HOMEs).
    throw new RelayError(
      "wrong_relay",
      `The relay ${core.relayName()} has no channel "${live.record.channel}": it was created on another relay. ` +
        `Give this agent the same relay as the channel's other members (the same SKYTALE_RELAY, or for the ` +
        `embedded relay the same SKYTALE_HOME and SKYTALE_LOCAL_PORT)`,
      { cause: e },
    );
  }
}

/**
 * Applies a burst of entries in seq order and persists once for the whole
 * burst: group, cursor and buffer go to disk together, before any of the
 * burst's messages is handed out (to `receive()` or to a tag handler).
 */
export async function onEntries(core: Core, ctx: Ctx, live: Live, es: LogEntry[]): Promise<void> {
  const handOut: (() => void)[] = [];
  let fresh: StoredMessage[] = [];
  const wasActive = live.record.active;
  // Benchmarks only (src/_probe.ts): other members' entries, not this member's read back.
  const probed = probes.sink ? es.filter((e) => !live.ownIds.has(e.id.toHex())) : undefined;
  if (probed) { for (const e of probed) probes.sink?.(Stages.arrived, e.id); }
  await live.mutex.run(async () => {
    let advanced = false;
    const buffered = live.record.buffer.length;
    const epoch = live.engine.epoch(live.group);
    const pending = live.record.pending;
    const tapped = handOut.length;
    for (const e of es) {
      if (e.seq <= live.record.cursor || !live.record.active) continue;
      try {
        await apply(core, ctx, live, e, e.id.toHex(), handOut);
      } catch (err) {
        logLine(
          `skytale: ${live.record.channel} seq ${e.seq}: skipped ${e.kind} (${errorMessage(err)})`,
        );
      }
      live.record.cursor = e.seq;
      live.dirty++;
      advanced = true;
    }
    if (!advanced) return;
    if (live.audit?.length) {
      // Queued durably before the cursor is written: a crash replays them, never loses them.
      const events = live.audit;
      live.audit = [];
      await (await core.audit.log()).append(live.record.channel, events);
    }
    fresh = live.record.buffer.slice(buffered);
    if (fresh.length > 0) {
      live.recent.push(...fresh);
      if (live.recent.length > RECENT) live.recent.splice(0, live.recent.length - RECENT);
    }
    // Replayable from the relay, so no flush: a lost write only means re-applying. A new
    // epoch, a settled commit or a removal is written at once; messages only now and then.
    const changed = live.engine.epoch(live.group) !== epoch || live.record.pending !== pending ||
      !live.record.active;
    if (handOut.length > tapped && !changed) {
      // What tag handlers get is not handed to them again after a crash.
      live.tapped = live.record.cursor;
      await ctx.store.appendJournal(live.record.channel, { tapped: live.tapped });
    } else if (handOut.length > tapped) live.tapped = live.record.cursor;
    await snapshotLater(core, ctx, live, changed);
    if (!live.record.active) await ctx.relay.unsubscribe(live.record.channel).catch(() => {});
  });
  if (probed) { for (const e of probed) probes.sink?.(Stages.buffered, e.id); }
  for (const f of handOut) f();
  if (fresh.length > 0) {
    announce(core, live.record.channel, fresh);
    await drain(core, ctx, live);
  }
  notify(live);
  if (wasActive && !live.record.active && !live.leaving) {
    emitMembership(core, { channel: live.record.channel, change: "removed" });
  }
}

/** Applies one entry (under the channel's mutex); `handOut` collects what tag handlers get. */
async function apply(
  core: Core,
  ctx: Ctx,
  live: Live,
  e: LogEntry,
  id: string,
  handOut: (() => void)[],
): Promise<void> {
  if (e.kind === "genesis") return; // the relay's copy of the public state at creation
  const pending = live.record.pending;
  if (pending && pending.id === id) return applyOwnCommit(core, live, e, pending);
  // Our own message read back: MLS does not decrypt a message for its sender.
  if (live.ownIds.delete(id)) {
    if (core.audit.enabled && e.kind === "application") core.audit.own(ctx, live, e, id);
    return;
  }
  const epoch = live.engine.epoch(live.group);
  if (e.kind === "commit" && e.epoch !== epoch) return; // before our join, or not applicable
  if (e.kind !== "commit" && e.epoch > epoch) {
    throw new CryptoError("invalid_message", `message from future epoch ${e.epoch}`);
  }
  let r: Processed;
  try {
    r = await live.engine.process(live.group, e.payload, e.kind);
    probes.sink?.(Stages.decrypted, e.id);
  } catch (err) {
    // Ours from before a restart (its id carries our tag, and MLS cannot decrypt it for
    // its sender): nothing to do. Another member copying the tag only loses its message.
    if (e.kind === "application" && bytesStartWith(e.id, live.ownTag)) return;
    throw err;
  }
  if (r.kind === "commit") return applyCommit(core, live, e, r);
  live.group = r.newGroup;
  if (r.kind === "proposal") return scheduleCommitPending(core, ctx, live);
  const { tag, body } = openTagged(r.aad, r.data);
  const time = new Date(e.time).toISOString();
  if (tag === Tags.chat && body.length === 0) {
    core.cover.received++; // cover traffic: never handed out
    return;
  }
  if (core.audit.enabled) {
    core.audit.see(live, {
      type: "message",
      seq: e.seq,
      time,
      sender: r.senderId,
      tag,
      size: body.length,
      sha256: await sha256Hex(body),
    });
  }
  if (tag === Tags.chat) {
    // Handed out before a crash lost the record.
    if (e.seq <= live.delivered && !live.held.has(e.seq)) return;
    live.record.buffer.push({
      sender: r.sender,
      senderId: r.senderId,
      seq: e.seq,
      time,
      text: fromUtf8(body),
    });
  } else {
    if (e.seq <= live.tapped) return; // handed out before a crash lost the record
    const d: TaggedData = { sender: r.sender, senderId: r.senderId, seq: e.seq, data: body };
    handOut.push(() => tap(live, tag, d));
  }
}

/** Hands data to the handlers of its tag. */
function tap(live: Live, tag: string, d: TaggedData): void {
  for (const handler of live.taps.get(tag) ?? []) {
    try {
      handler(d);
    } catch (err) {
      logLine(`skytale: a "${tag}" handler failed: ${errorMessage(err)}`);
    }
  }
}

/** This member's own commit read back: adopt the group it saved as pending. */
function applyOwnCommit(core: Core, live: Live, e: LogEntry, pending: PendingCommit): void {
  const before = core.audit.enabled ? live.engine.roster(live.group) : [];
  // The copy saved when the commit was built, decoded: not the state object built then, which
  // shares secret-tree arrays with the group used (and zeroed in place) while the commit was in
  // flight, so its retained keys of the old epoch would be wiped (the fault suite caught it).
  live.group = live.engine.decodeGroup(pending.group);
  core.audit.commit(live, e, before, false);
  live.record.pending = undefined;
  pin(live, live.engine.roster(live.group));
  if (pending.welcome) {
    const ws = live.record.welcomes ??= [];
    ws.push(pending.welcome);
    if (ws.length > MAX_WELCOMES) ws.splice(0, ws.length - MAX_WELCOMES);
  }
  live.record.recovered = undefined; // a new epoch: fresh sending keys
}

/** Welcomes of sequenced adds kept per channel for a repeated `addMember`. */
const MAX_WELCOMES = 16;

/** Another member's commit, processed: move to its epoch (or note this member's removal). */
function applyCommit(
  core: Core,
  live: Live,
  e: LogEntry,
  r: Extract<Processed, { kind: "commit" }>,
): void {
  // A commit whose new members claim a pinned name with another key is refused like an
  // invalid one: the group stays at this epoch.
  if (!r.removed) pin(live, live.engine.roster(r.newGroup));
  const before = core.audit.enabled ? live.engine.roster(live.group) : [];
  live.group = r.newGroup;
  core.audit.commit(live, e, before, r.removed);
  live.record.recovered = undefined; // a new epoch: fresh sending keys
  if (r.removed) {
    live.record.active = false;
    logLine(`skytale: ${core.identity} was removed from "${live.record.channel}"`);
  }
  if (live.record.pending && live.record.pending.epoch < live.engine.epoch(live.group)) {
    live.record.pending = undefined;
  }
}

function bytesStartWith(b: Uint8Array, prefix: Uint8Array): boolean {
  return b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
}
