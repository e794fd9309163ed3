/**
 * Who is in a channel: creating it, adding a member (and handing the same
 * Welcome to a repeated request), joining from a Welcome, removing a member,
 * rotating keys and leaving. Every change is a commit ordered by the relay
 * (`_commit.ts`).
 *
 * @module
 */
import { CryptoError, RelayError, ValidationError } from "../errors.ts";
import { memberOf } from "../identity.ts";
import type { EntryKind } from "../relay/log/types.ts";
import { randomBytes, sha256Hex } from "../_util.ts";
import {
  type Core,
  type Ctx,
  type Live,
  loadLive,
  newRecord,
  pin,
  remember,
  save,
  waitFor,
} from "./_live.ts";
import { commit, update } from "./_commit.ts";
import { subscribe } from "./_pipeline.ts";
import { emitMembership } from "./_delivery.ts";
import { fromUtf8, utf8 } from "./envelope.ts";

const LEAVE_WAIT_MS = 10_000;

/** Creates a channel with this identity as its only member (see `SkytaleChannelManager.create`). */
export async function createChannel(
  core: Core,
  ctx: Ctx,
  channel: string,
  ciphersuite: string | undefined,
): Promise<void> {
  if (core.channels.has(channel)) {
    throw new ValidationError("channel_exists", `Channel "${channel}" already exists here`);
  }
  const engine = await ctx.engineFor(ciphersuite);
  const group = await engine.createGroup(utf8(channel), core.identity, ctx.key);
  // The relay validates every later commit against this public state.
  if (!await ctx.relay.create(channel, await engine.groupInfo(group))) {
    throw new ValidationError(
      "channel_exists",
      `Channel "${channel}" already exists on the relay: join it with a Welcome or an invite`,
    );
  }
  const record = newRecord(ctx, channel, engine, group, {
    [core.identity]: memberOf(core.identity, ctx.key.publicKey).did,
  });
  await ctx.store.saveChannel(record);
  await subscribe(core, ctx, await loadLive(core, ctx, record));
  await core.audit.start(channel, "created", engine.roster(group), 0);
  emitMembership(core, { channel, change: "joined" });
}

/** A new key package, its private part stored (see `SkytaleChannelManager.keyPackage`). */
export async function newKeyPackage(
  core: Core,
  ctx: Ctx,
  ciphersuite: string | undefined,
): Promise<string> {
  const engine = await ctx.engineFor(ciphersuite);
  const kp = await engine.newKeyPackage(core.identity, ctx.key);
  await ctx.store.saveKeyPackage({ ...kp, created: Date.now() });
  return kp.keyPackage.toHex();
}

/** Adds the owner of a key package; the Welcome (see `SkytaleChannelManager.addMember`). */
export async function addMember(
  core: Core,
  ctx: Ctx,
  live: Live,
  kp: Uint8Array,
): Promise<Uint8Array> {
  const key = await sha256Hex(kp);
  const welcome = await commit(
    core,
    ctx,
    live,
    async (g) => {
      const r = await live.engine.commitAdd(g, kp);
      pin(live, live.engine.roster(r.newGroup), false);
      return {
        commit: r.commit,
        newGroup: r.newGroup,
        result: r.welcome,
        welcome: { keyPackage: key, identity: r.identity, welcome: r.welcome },
      };
    },
    false,
    // The same key package again (an answer lost to a crash or a dropped connection): the
    // member is in already, so the Welcome made then is the one to hand over.
    () => rememberedWelcome(live, key),
  );
  return welcome!;
}

/** The Welcome this member made for a key package (SHA-256 hex), while that member is in. */
export function rememberedWelcome(live: Live, kpHash: string): Uint8Array | undefined {
  const w = live.record.welcomes?.find((x) => x.keyPackage === kpHash);
  return w && live.engine.members(live.group).includes(w.identity) ? w.welcome : undefined;
}

/** Joins from a Welcome (see `SkytaleChannelManager.join`). */
export async function joinChannel(
  core: Core,
  ctx: Ctx,
  channel: string,
  welcome: Uint8Array,
): Promise<void> {
  const existing = core.channels.get(channel);
  if (existing?.record.active) {
    throw new ValidationError("channel_exists", `Already a member of "${channel}"`);
  }
  const candidates = await ctx.store.loadKeyPackages();
  const engine = await ctx.engineFor(ctx.welcomeSuite(welcome));
  const { group, ref } = await engine.join(welcome, candidates);
  const groupChannel = fromUtf8(engine.groupId(group));
  if (groupChannel !== channel) {
    throw new CryptoError(
      "welcome_mismatch",
      `Cannot join channel "${channel}": the Welcome is for "${groupChannel}"`,
    );
  }
  const roster = engine.roster(group);
  const names = new Set(roster.map((m) => m.name));
  if (names.size !== roster.length) {
    throw new CryptoError("refused", `Cannot join "${channel}": two of its members share a name`);
  }
  const pins = Object.fromEntries(roster.map((m) => [m.name, m.did]));
  const record = newRecord(ctx, channel, engine, group, pins);
  await ctx.store.saveChannel(record);
  await ctx.store.deleteKeyPackage(ref);
  try {
    await subscribe(core, ctx, await loadLive(core, ctx, record));
  } catch (e) {
    if (!(e instanceof RelayError && e.code === "wrong_relay")) throw e;
    // Not joined: the key package is kept, so the same Welcome works once the relay is right.
    const kp = candidates.find((c) => c.ref === ref);
    if (kp) await ctx.store.saveKeyPackage(kp);
    core.channels.delete(channel);
    if (existing) core.channels.set(channel, existing);
    await (existing ? ctx.store.saveChannel(existing.record) : ctx.store.deleteChannel(channel));
    throw new RelayError(
      "wrong_relay",
      `Cannot join "${channel}" yet: ${e.message}. The Welcome stays usable: join with it again then`,
      { cause: e },
    );
  }
  core.contexts.joined(channel); // a joiner asks a member for the current shared context
  await core.audit.start(channel, "joined", roster, engine.epoch(group));
  emitMembership(core, { channel, change: "joined" });
}

/** Removes another member (see `SkytaleChannelManager.removeMember`). */
export async function removeMember(
  core: Core,
  ctx: Ctx,
  live: Live,
  identity: string,
): Promise<void> {
  if (identity === core.identity) {
    throw new ValidationError(
      "invalid_argument",
      `Cannot remove yourself from "${live.record.channel}": use leave()`,
    );
  }
  await update(core, ctx, live, (g) => live.engine.commitRemove(g, identity));
}

/** Rotates this member's keys (see `SkytaleChannelManager.rotateKeys`). */
export async function rotateKeys(core: Core, ctx: Ctx, live: Live): Promise<void> {
  await update(core, ctx, live, (g) => live.engine.commitUpdate(g));
}

/** Leaves a channel (see `SkytaleChannelManager.leave`). */
export async function leave(core: Core, ctx: Ctx, live: Live): Promise<void> {
  const channel = live.record.channel;
  // A remaining member commits the self-remove proposal. A proposal lapses if
  // another commit is sequenced first, so propose again at the new epoch until
  // the removal is seen, or until LEAVE_WAIT_MS when nobody else is online.
  const deadline = Date.now() + LEAVE_WAIT_MS;
  live.leaving = true;
  while (live.record.active && live.engine.members(live.group).length > 1) {
    const out = await live.mutex.run(async () => {
      const r = await live.engine.proposeLeave(live.group);
      live.group = r.newGroup;
      const id = randomBytes(16);
      remember(live, id);
      // The proposal used a handshake key: persist before it leaves, as for sends.
      await save(ctx, live);
      return { id, epoch: live.engine.epoch(live.group), payload: r.proposal };
    });
    const res = await ctx.relay.publish(channel, { ...out, kind: "proposal" as EntryKind });
    if (!res.ok) {
      throw new RelayError("relay_error", `Relay refused to leave "${channel}": ${res.code}`);
    }
    const left = Math.max(0, deadline - Date.now());
    await waitFor(
      core,
      live,
      () => !live.record.active || live.engine.epoch(live.group) > out.epoch,
      left,
    );
    if (Date.now() >= deadline) break;
  }
  await ctx.relay.unsubscribe(channel).catch(() => {});
  await live.mutex.run(async () => {
    live.record.active = false;
    core.channels.delete(channel);
    await ctx.store.deleteChannel(channel);
  });
  emitMembership(core, { channel, change: "left" });
}
