/**
 * Invites, both sides. The inviter keeps its invites (uses, expiry, who was
 * admitted) in the store, polls each one's request mailbox while it runs and
 * answers every authenticated join request exactly once, even across crashes;
 * the joiner posts a request and waits for the reply that names it. Token and
 * message formats are in `invite.ts`.
 *
 * @module
 */
import type { z } from "zod";
import { InterruptedError, ProtocolError, ValidationError } from "../errors.ts";
import type { Member } from "../identity.ts";
import { newMailbox } from "../relay/mailbox.ts";
import { logLine } from "../runtime/env.ts";
import { fromHex } from "../validate.ts";
import { errorMessage, randomHex, sha256Hex, sleep } from "../_util.ts";
import { Mutex } from "./_mutex.ts";
import type { Core, Ctx, Live } from "./_live.ts";
import { rememberedWelcome } from "./_membership.ts";
import { utf8 } from "./envelope.ts";
import {
  decodeInviteToken,
  encodeInviteToken,
  type InviteRecord,
  JoinReply,
  JoinRequest,
  open,
  parseInviteRecords,
  seal,
} from "./invite.ts";

const INVITES_BLOB = "invites";
const INVITE_POLL_MS = 250;
/**
 * How long an invite that is used up or expired is still served, so that
 * requests arriving late (a joiner whose clock is behind, a race lost) get a
 * refusal instead of no answer; as long as the reply's mailbox TTL.
 */
const INVITE_GRACE_MS = 600_000;

type Request = { keyPackage: string; reply: string; identity: string };
type Reply = { ok: boolean; welcome?: string; error?: string };

/** The answer to one join request, and how far it got. */
interface Answer {
  sealed: Uint8Array;
  sent: boolean;
  saved: boolean;
}

/** A manager's invites: making them, serving their requests, and joining by one. */
export class Invites {
  #core: Core;
  #invites: InviteRecord[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #mutex = new Mutex();
  /**
   * Invite id → request hash → the answer this process made to that join
   * request and how far it got, so a request handed out again while this
   * process runs (its reply, save or ack failed) resumes there instead of
   * answering twice. After a restart `addMember`'s remembered Welcomes and the
   * invite's `admitted` list give the same answer.
   */
  #answered = new Map<string, Map<string, Answer>>();

  /** @param core The manager's shared state. */
  constructor(core: Core) {
    this.#core = core;
  }

  /** Loads the stored invites on start-up and serves them. */
  async load(ctx: Ctx): Promise<void> {
    const blob = await ctx.store.loadBlob(INVITES_BLOB);
    if (!blob) return;
    const { invites, dropped } = parseInviteRecords(new TextDecoder().decode(blob));
    // Invites from before mailbox take keys have a request mailbox nobody can take from.
    this.#invites = invites;
    if (dropped > 0) {
      logLine(`skytale: dropped ${dropped} invite(s) made by an older version (or unreadable)`);
    }
    this.#poll(ctx);
  }

  /** Makes an invite token (see `SkytaleChannelManager.invite`). */
  async create(
    ctx: Ctx,
    live: Live,
    options: { ttl?: number; uses?: number },
  ): Promise<string> {
    const ttl = options.ttl ?? 3600;
    const uses = options.uses ?? 1;
    if (!Number.isInteger(uses) || uses < 1 || uses > 1000) {
      throw new ValidationError("invalid_argument", `Invite uses must be 1-1000, got ${uses}`);
    }
    if (!Number.isFinite(ttl) || ttl <= 0 || ttl > 30 * 86400) {
      throw new ValidationError("invalid_argument", `Invite ttl must be 1s-30d, got ${ttl}`);
    }
    // The request mailbox is the inviter's: its take key never leaves this record.
    const box = await newMailbox("inv:");
    const record: InviteRecord = {
      relay: this.#core.endpoint() ?? `ws://127.0.0.1:${this.#core.localPort()}`,
      channel: live.record.channel,
      id: randomHex(16),
      address: box.address,
      takeKey: box.takeKey.toHex(),
      secret: randomHex(32),
      expires: Date.now() + ttl * 1000,
      uses,
      ...(live.engine.suite !== ctx.engine.suite ? { suite: live.engine.suite } : {}),
    };
    await this.#mutex.run(async () => {
      this.#invites.push(record);
      await this.#save(ctx);
    });
    this.#poll(ctx);
    return encodeInviteToken(record);
  }

  /** Stops serving; waits for a pass under way. */
  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    await this.#mutex.run(() => Promise.resolve());
  }

  async #save(ctx: Ctx): Promise<void> {
    const now = Date.now();
    // A spent invite is kept (and refuses what still comes) until its grace ends.
    this.#invites = this.#invites.filter((i) => i.expires + INVITE_GRACE_MS > now);
    await ctx.store.saveBlob(INVITES_BLOB, utf8(JSON.stringify(this.#invites)));
    // Nobody takes requests for a dropped invite any more.
    for (const id of this.#answered.keys()) {
      if (!this.#invites.some((i) => i.id === id)) this.#answered.delete(id);
    }
  }

  #poll(ctx: Ctx): void {
    if (this.#timer || this.#core.closed) return;
    this.#timer = setTimeout(async () => {
      try {
        await this.#mutex.run(() => this.#serve(ctx));
      } catch (e) {
        logLine(`skytale: serving invites failed: ${errorMessage(e)}`);
      }
      this.#timer = undefined;
      if (this.#invites.length > 0) this.#poll(ctx);
    }, INVITE_POLL_MS);
  }

  /**
   * Answers the join requests waiting for each live invite. A request is acked
   * to the relay only once it is used for good: its reply is with the relay and
   * the invite's remaining uses are saved. If this process stops (or loses the
   * relay) before that, the relay hands the request out again.
   */
  async #serve(ctx: Ctx): Promise<void> {
    let changed = false;
    for (const inv of [...this.#invites]) {
      if (this.#core.closed) return;
      if (inv.expires + INVITE_GRACE_MS <= Date.now()) {
        changed = true;
        continue;
      }
      const address = inv.address;
      const takeKey = Uint8Array.fromHex(inv.takeKey);
      for (const item of await ctx.relay.mailboxLease(address, takeKey)) {
        if (this.#core.closed) return;
        const req = await openOrSay(inv, "request", item.payload, JoinRequest);
        const ack = () => ctx.relay.mailboxAck(address, [item.id], takeKey);
        if (typeof req === "string") {
          logLine(`skytale: ignored a join request for invite ${inv.id} that ${req}`);
          await ack();
        } else await this.#answer(ctx, inv, req, item.payload, ack);
      }
    }
    if (changed) await this.#save(ctx);
  }

  /** Answers one authenticated request, resuming where an earlier try stopped. */
  async #answer(
    ctx: Ctx,
    inv: InviteRecord,
    req: Request,
    payload: Uint8Array,
    ack: () => Promise<unknown>,
  ): Promise<void> {
    // In flight answers are keyed by the request itself: two requests that share a reply
    // address are two requests.
    const reqKey = await sha256Hex(payload);
    let answers = this.#answered.get(inv.id);
    if (!answers) this.#answered.set(inv.id, answers = new Map());
    let answer = answers.get(reqKey);
    if (!answer) {
      const { reply, admitted } = await this.#admit(ctx, inv, req);
      // The reply names the request it answers, so it cannot be replayed to another joiner.
      const sealed = await seal(inv.secret, `reply:${inv.id}`, { ...reply, req: reqKey });
      answers.set(reqKey, answer = { sealed, sent: false, saved: !admitted });
    }
    // The reply goes out before the uses are saved: a crash between the two hands the
    // request out again, and addMember then returns the same Welcome, counted once.
    if (!answer.sent) {
      await ctx.relay.mailboxPut(req.reply, answer.sealed, 600);
      answer.sent = true;
    }
    if (!answer.saved) {
      await this.#save(ctx);
      answer.saved = true;
    }
    // Used for good: the reply is with the relay and the uses it took are saved.
    await ack();
    answers.delete(reqKey);
  }

  /**
   * Decides one authenticated join request. Each admission takes one use; the
   * same request again (same reply address, same key package) gets the same
   * Welcome and takes none; everything else past the uses or the expiry (by
   * this clock, not the joiner's) is refused, and every refusal is logged.
   *
   * @returns The reply to seal, and whether a use was taken (to be saved).
   */
  async #admit(
    ctx: Ctx,
    inv: InviteRecord,
    req: Request,
  ): Promise<{ reply: Reply; admitted: boolean }> {
    const refuse = (why: string) => {
      logLine(
        `skytale: refused a join request from "${req.identity}" to "${inv.channel}" by invite ${inv.id}: ${why}`,
      );
      return { reply: { ok: false, error: why }, admitted: false };
    };
    let kp: Uint8Array;
    let claimed: Member;
    try {
      kp = fromHex(req.keyPackage, "Key package");
      claimed = ctx.engine.keyPackageMember(kp);
    } catch (e) {
      return refuse(errorMessage(e));
    }
    if (claimed.name !== req.identity) {
      return refuse(`it names "${req.identity}" but its key package is for "${claimed.name}"`);
    }
    const kpHash = await sha256Hex(kp);
    const counted = inv.admitted ??= [];
    const prior = counted.find((a) => a.reply === req.reply || a.keyPackage === kpHash);
    if (prior) {
      if (prior.reply !== req.reply || prior.keyPackage !== kpHash) {
        return refuse(
          prior.reply === req.reply
            ? "its reply address was admitted before with another key package"
            : "its key package was admitted before under another reply address",
        );
      }
      // The same request again (handed out again after a crash, or re-sent): the same
      // Welcome, if the member is still in, and no use taken. Nothing is committed again.
      const live = this.#core.channels.get(inv.channel);
      const welcome = live && rememberedWelcome(live, kpHash)?.toHex();
      return welcome
        ? { reply: { ok: true, welcome }, admitted: false }
        : refuse("it was admitted before, and that Welcome is no longer kept");
    }
    if (inv.expires <= Date.now()) {
      return refuse(`the invite expired at ${new Date(inv.expires).toISOString()}`);
    }
    if (inv.uses <= 0) return refuse("the invite has no uses left");
    let welcome: string;
    try {
      // After a crash between this add and saving the use, addMember returns the same
      // Welcome without committing, and the use is counted now, once.
      welcome = await this.#core.host.addMember(inv.channel, req.keyPackage);
    } catch (e) {
      return refuse(errorMessage(e));
    }
    inv.uses -= 1;
    counted.push({ reply: req.reply, keyPackage: kpHash });
    logLine(
      `skytale: admitted "${req.identity}" (${claimed.did}) to "${inv.channel}" by invite ${inv.id}`,
    );
    return { reply: { ok: true, welcome }, admitted: true };
  }

  /** Joins by an invite token (see `SkytaleChannelManager.joinWithToken`). */
  async join(channel: string, token: string, timeoutSeconds: number): Promise<void> {
    const core = this.#core;
    const inv = decodeInviteToken(token);
    if (inv.channel !== channel) {
      throw new ValidationError(
        "invalid_argument",
        `The invite is for channel "${inv.channel}", not "${channel}"`,
      );
    }
    const ctx = await core.context();
    if (core.channels.get(channel)?.record.active) {
      throw new ValidationError("channel_exists", `Already a member of "${channel}"`);
    }
    const keyPackage = await core.host.keyPackage(inv.suite ? { ciphersuite: inv.suite } : {});
    // The reply mailbox is this joiner's: only its take key, kept here, takes from it.
    const { address: reply, takeKey } = await newMailbox("wel:");
    const request = await seal(inv.secret, `request:${inv.id}`, {
      keyPackage,
      reply,
      identity: core.identity,
    });
    // Only a reply that names this request answers it.
    const reqKey = await sha256Hex(request);
    const ttl = Math.max(1, Math.ceil((inv.expires - Date.now()) / 1000));
    await ctx.relay.mailboxPut(inv.address, request, ttl);
    const end = Date.now() + timeoutSeconds * 1000;
    // The reply is acked once used (the refusal reported, the join saved); until then a
    // lost answer or a dropped connection leaves it with the relay for the next take.
    const ack = (id: Uint8Array) =>
      ctx.relay.mailboxAck(reply, [id], takeKey).catch((e) =>
        logLine(`skytale: could not ack the invite reply for "${channel}": ${errorMessage(e)}`)
      );
    while (Date.now() < end && !core.closed) {
      for (const item of await ctx.relay.mailboxLease(reply, takeKey)) {
        const r = await openOrSay(inv, "reply", item.payload, JoinReply);
        if (typeof r === "string" || r.req !== reqKey) {
          const why = typeof r === "string" ? r : "answers another request";
          logLine(`skytale: ignored an invite reply for "${channel}" that ${why}`);
          await ack(item.id);
          continue;
        }
        if (!r.ok || !r.welcome) {
          await ack(item.id);
          throw new ValidationError(
            "invalid_argument",
            `The inviter refused to admit "${core.identity}" to "${channel}": ${r.error}`,
          );
        }
        await core.host.join(channel, r.welcome);
        await ack(item.id);
        return;
      }
      await sleep(INVITE_POLL_MS);
    }
    throw new InterruptedError(
      "timeout",
      `No answer from the inviter of "${channel}" in time: is its MCP server or agent running?`,
    );
  }
}

/** Opens a request or reply of an invite; what is wrong with it, as a phrase, if it fails. */
async function openOrSay<T>(
  inv: { id: string; secret: string },
  what: "request" | "reply",
  payload: Uint8Array,
  schema: z.ZodType<T>,
): Promise<T | string> {
  try {
    return await open(inv.secret, `${what}:${inv.id}`, payload, schema) ?? "fails its MAC";
  } catch (e) {
    if (e instanceof ProtocolError) return `was refused: ${e.message}`;
    throw e;
  }
}
