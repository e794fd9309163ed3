/**
 * {@linkcode SkytaleChannelManager}: end-to-end encrypted channels for one
 * identity. It keeps MLS group state per channel, orders commits through the
 * relay, decrypts in sequence order in the background and buffers messages
 * for `receive()`. Everything it has acknowledged survives a restart. The
 * class is the public face; the `_*.ts` modules beside it do the work, each
 * handed the manager's shared state (`Core`, in `_live.ts`).
 *
 * @module
 */
import { RelayError, ValidationError } from "../errors.ts";
import type { BoxPrivateKey } from "../seal.ts";
import { type Member, memberOf } from "../identity.ts";
import type { EntryKind } from "../relay/log/types.ts";
import { fromHex, MAX_MESSAGE_BYTES, parseChannelName } from "../validate.ts";
import { probes, Stages } from "../_probe.ts";
import { tagData, Tags, utf8 } from "./envelope.ts";
import type { SharedContext } from "../context/context.ts";
import type { AuditReport } from "../audit/chain.ts";
import {
  assertActive,
  type Core,
  type Ctx,
  flushAll,
  type Live,
  liveOf,
  publicMessage,
  RECENT,
  summary,
  waitFor,
} from "./_live.ts";
import { update } from "./_commit.ts";
import { checkTimeout, iterate, listen, receiveLimits, since, take } from "./_delivery.ts";
import type { Invites } from "./_invites.ts";
import { newCore, shutdown } from "./_lifecycle.ts";
import * as membership from "./_membership.ts";
import { seal } from "./_send.ts";
import type {
  ChannelSummary,
  MembershipChange,
  Message,
  MessageListenerOptions,
  ReceiveOptions,
  SkytaleOptions,
  TaggedData,
} from "./types.ts";

export { relayUrl } from "./_lifecycle.ts";

/**
 * End-to-end encrypted channels for one identity. `await using` closes it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 *
 * await using relay = await startTestRelay(); // leave `endpoint` out for the embedded relay
 * const agent = (identity: string) =>
 *   new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
 * await using alice = agent("alice");
 * await using bob = agent("bob");
 * await alice.create("acme/research/results");
 * const welcome = await alice.addMember("acme/research/results", await bob.keyPackage());
 * await bob.join("acme/research/results", welcome);
 * await alice.send("acme/research/results", "analysis complete");
 * const msgs = await bob.receive("acme/research/results", { timeout: 5 });
 * assert.deepEqual(msgs.map((m) => [m.sender, m.text]), [["alice", "analysis complete"]]);
 * ```
 */
export class SkytaleChannelManager {
  /** This agent's identity. */
  readonly identity: string;
  /** What every part of the manager shares (`_live.ts`). */
  #core: Core;
  #invites: Invites;
  #boxKey: Promise<BoxPrivateKey> | undefined;

  /**
   * Creates a manager; nothing connects until the first call.
   *
   * @param options Identity, relay, credentials and data directory; each left out
   *   falls back to its environment variable.
   */
  constructor(options: SkytaleOptions = {}) {
    const { core, invites } = newCore(this, options);
    this.identity = core.identity;
    this.#core = core;
    this.#invites = invites;
  }

  /** The relay URL this manager uses, or `undefined` for the embedded local relay. */
  get endpoint(): string | undefined {
    return this.#core.endpoint();
  }

  /** The port of the embedded local relay (`SKYTALE_LOCAL_PORT`, default 5000). */
  get localPort(): number {
    return this.#core.localPort();
  }

  /**
   * This agent's identity: its display name, its `did:key` (the stable id
   * other members see as `senderId`) and a fingerprint to compare out of band.
   *
   * @returns Name, did and fingerprint.
   */
  async whoami(): Promise<Member> {
    const ctx = await this.#core.context();
    return memberOf(this.identity, ctx.key.publicKey);
  }

  /**
   * Opens an HPKE box sealed to this agent's did (see `src/seal.ts`), with
   * the X25519 form of its identity key. The key itself never leaves the
   * manager; this is the one use the MCP transport (`serveChannel`) makes of
   * it, so that a client's requests can be sealed to the server's did.
   *
   * @internal
   * @param box `enc || ciphertext`, as `sealBox` makes it for this agent's did.
   * @param info The HPKE `info` it was sealed with.
   * @param aad The data it was bound to.
   * @returns The plaintext.
   * @throws {CryptoError} `invalid_message` if it was not sealed to this did with this `info` and `aad`.
   */
  async openSealed(box: Uint8Array, info: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const ctx = await this.#core.context();
    const { identityBoxKey, openBox } = await import("../seal.ts");
    this.#boxKey ??= identityBoxKey(ctx.key);
    return await openBox(await this.#boxKey, box, info, aad);
  }

  /**
   * Counters of this manager: cover messages sent, and received and dropped.
   *
   * @returns The counts since the manager started.
   */
  metrics(): { coverSent: number; coverReceived: number } {
    return { coverSent: this.#core.cover.sent, coverReceived: this.#core.cover.received };
  }

  #get(channel: unknown): Promise<{ ctx: Ctx; live: Live }> {
    return liveOf(this.#core, channel);
  }

  /**
   * Creates a channel with this identity as its first member.
   *
   * @param channel A name `org/namespace/service`.
   * @param options `ciphersuite`: the channel's MLS ciphersuite, e.g. the post-quantum hybrid
   *   `MLS_256_XWING_AES256GCM_SHA512_Ed25519` (default: the manager's `suite`). Members join
   *   with key packages of the same suite (`keyPackage({ ciphersuite })`).
   * @throws {SkytaleError} `invalid_channel`, or `channel_exists` if it exists here or on the relay.
   * @throws {ValidationError} `invalid_argument` for an unknown or unavailable ciphersuite.
   */
  async create(channel: string, options: { ciphersuite?: string } = {}): Promise<void> {
    parseChannelName(channel);
    const ctx = await this.#core.context();
    await membership.createChannel(this.#core, ctx, channel, options.ciphersuite);
  }

  /**
   * Makes a new MLS KeyPackage; its private part stays on disk until a Welcome uses it.
   *
   * @param options `ciphersuite`: the suite of the channel it is for (default: the manager's).
   * @returns The KeyPackage message, hex, to hand to a member who will add this identity.
   */
  async keyPackage(options: { ciphersuite?: string } = {}): Promise<string> {
    return await membership.newKeyPackage(
      this.#core,
      await this.#core.context(),
      options.ciphersuite,
    );
  }

  /**
   * Adds a member: commits an Add through the relay and returns the Welcome.
   * Repeating the call with the same key package once the member is in (say
   * the first answer was lost) returns the same Welcome and commits nothing.
   *
   * @param channel The channel.
   * @param keyPackageHex The new member's KeyPackage, hex (from its `keyPackage()`).
   * @returns The Welcome, hex, for the new member's `join()`.
   */
  async addMember(channel: string, keyPackageHex: string): Promise<string> {
    const kp = fromHex(keyPackageHex, "Key package");
    const { ctx, live } = await this.#get(channel);
    return (await membership.addMember(this.#core, ctx, live, kp)).toHex();
  }

  /**
   * Joins a channel from a Welcome made for one of this identity's key packages.
   *
   * @param channel The channel the Welcome is for.
   * @param welcomeHex The Welcome, hex.
   */
  async join(channel: string, welcomeHex: string): Promise<void> {
    parseChannelName(channel);
    const welcome = fromHex(welcomeHex, "Welcome");
    const ctx = await this.#core.context();
    await membership.joinChannel(this.#core, ctx, channel, welcome);
  }

  /**
   * Encrypts and sends a text message.
   *
   * @param channel The channel.
   * @param text The message.
   * @returns The relay's sequence number for it.
   */
  async send(channel: string, text: string): Promise<{ seq: number }> {
    if (typeof text !== "string" || text.length === 0) {
      throw new ValidationError("invalid_argument", "Message must be a non-empty string");
    }
    return await this.sendTagged(channel, Tags.chat, utf8(text));
  }

  /**
   * Sends bytes under a tag other layers listen for (see {@linkcode onTagged}).
   *
   * @param channel The channel.
   * @param tag The layer, e.g. `mcp`.
   * @param data The body.
   * @returns The relay's sequence number.
   */
  async sendTagged(channel: string, tag: string, data: Uint8Array): Promise<{ seq: number }> {
    if (data.length > MAX_MESSAGE_BYTES) {
      throw new ValidationError(
        "too_large",
        `Message is ${data.length} bytes; the limit is ${MAX_MESSAGE_BYTES}`,
      );
    }
    const { ctx, live } = await this.#get(channel);
    const core = this.#core;
    if (live.record.recovered) {
      // State came from the backup copy, which may predate messages already sent
      // with this epoch's keys: move to a new epoch first, so no key or nonce repeats.
      live.rekey ??= update(core, ctx, live, (g) => live.engine.commitUpdate(g))
        .finally(() => live.rekey = undefined);
      await live.rekey;
    }
    const out = await seal(core, ctx, live, data, tagData(tag));
    if (core.audit.enabled && data.length > 0) await core.audit.noteSent(out.id, tag, data);
    const res = await ctx.relay.publish(channel, { ...out, kind: "application" as EntryKind });
    probes.sink?.(Stages.acked, out.id);
    if (!res.ok) {
      throw new RelayError("relay_error", `Relay refused a message to "${channel}": ${res.code}`);
    }
    return { seq: res.seq };
  }

  /**
   * Registers a handler for data under `tag` (not `chat`) arriving on a channel.
   *
   * @param channel The channel.
   * @param tag The layer, e.g. `mcp`.
   * @param handler Called once per message, in sequence order.
   * @returns A function that removes the handler.
   */
  async onTagged(
    channel: string,
    tag: string,
    handler: (d: TaggedData) => void,
  ): Promise<() => void> {
    const { live } = await this.#get(channel);
    let set = live.taps.get(tag);
    if (!set) live.taps.set(tag, set = new Set());
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * Returns the messages received since they were last handed out, waiting up
   * to `timeout` seconds when there is none yet; it returns as soon as the
   * first one arrives. What it returns is consumed: journaled as delivered
   * before it is returned, and never handed out again, also after a crash.
   * `peek` and `afterSeq` read without consuming.
   *
   * Consumers of one channel (`receive()`, {@linkcode messages} iterators and
   * `"message"` listeners) share one buffer: each message is handed to
   * whichever takes it first, once.
   *
   * @example
   * ```ts ignore
   * const ac = new AbortController();
   * const [first] = await manager.receive("acme/research/results", { timeout: 30, signal: ac.signal, max: 1 });
   * ```
   *
   * @param channel The channel.
   * @param options `timeout` in seconds (default 5, at most 300), `signal`,
   *   `afterSeq`, `peek` and `max` (see {@linkcode ReceiveOptions}).
   * @returns The messages, oldest first.
   * @throws {SkytaleError} `aborted` when `signal` fires while waiting.
   */
  async receive(channel: string, options: ReceiveOptions = {}): Promise<Message[]> {
    const { ms, max } = receiveLimits(options);
    const after = options.afterSeq;
    const { ctx, live } = await this.#get(channel);
    const core = this.#core;
    if (after !== undefined) {
      await waitFor(core, live, () => since(live, after).length > 0, ms, options.signal);
      return since(live, after).slice(0, max).map(publicMessage);
    }
    if (options.peek) {
      await waitFor(core, live, () => live.record.buffer.length > 0, ms, options.signal);
      return live.record.buffer.slice(0, max).map(publicMessage);
    }
    return (await take(core, ctx, live, ms, options.signal, max)).map(publicMessage);
  }

  /**
   * The channel's recent messages (the last 100 that arrived while this
   * manager ran, plus any still buffered from before), handed out or not.
   * Consumes nothing and never waits.
   *
   * @param channel The channel.
   * @param options `afterSeq`: only later messages; `max`: only the newest that many.
   * @returns The messages, oldest first.
   */
  async history(
    channel: string,
    options: { afterSeq?: number; max?: number } = {},
  ): Promise<Message[]> {
    const { live } = await this.#get(channel);
    const all = since(live, options.afterSeq ?? 0);
    return all.slice(Math.max(0, all.length - (options.max ?? RECENT))).map(publicMessage);
  }

  /**
   * The channel's messages as an async iterator: each message is consumed
   * (journaled as delivered) once, like `receive()` hands it out. It waits
   * for messages without end, until `signal` fires or the manager closes, and
   * then ends. Leaving the loop early (`break`) puts the messages of the
   * current burst that were not yielded yet back into the buffer.
   *
   * @example
   * ```ts ignore
   * const ac = new AbortController();
   * for await (const m of manager.messages("acme/research/results", { signal: ac.signal })) {
   *   console.log(m.sender, m.text);
   * }
   * ```
   *
   * @param channel The channel.
   * @param options `signal` ends the iteration.
   * @returns An async iterator of messages, in sequence order.
   */
  async *messages(
    channel: string,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<Message, void, undefined> {
    const { ctx, live } = await this.#get(channel);
    yield* iterate(this.#core, ctx, live, options.signal);
  }

  /**
   * Waits until one of `channels` has messages buffered (for `receive()`),
   * up to `timeout` seconds; it returns as soon as one has.
   *
   * @param channels The channels to watch.
   * @param options `timeout` in seconds (default 5, at most 300) and `signal`.
   * @returns The channels with buffered messages (empty on timeout).
   * @throws {SkytaleError} `aborted` when `signal` fires while waiting.
   */
  async wait(
    channels: string[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const timeout = checkTimeout(options.timeout ?? 5);
    const lives = await Promise.all(channels.map(async (c) => (await this.#get(c)).live));
    const ready = () =>
      lives.filter((l) => l.record.buffer.length > 0).map((l) => l.record.channel);
    await waitFor(this.#core, lives, () => ready().length > 0, timeout * 1000, options.signal);
    return ready();
  }

  /**
   * Listens for messages. `"message"`: each message of the channel (or of
   * every channel) is taken off the buffer and handed to the listener,
   * journaled as delivered like `receive()` does; all `"message"` listeners
   * that accept a message get it in the same hand-out, once. `"arrival"`: told
   * of each burst of new messages without consuming them. `"membership"`: told
   * when this identity creates, joins or leaves a channel or is removed.
   *
   * @example
   * ```ts ignore
   * const off = manager.on("message", (m, channel) => console.log(channel, m.text));
   * off();
   * ```
   *
   * @param event `"message"`, `"arrival"` or `"membership"`.
   * @param listener Called in sequence order, per channel.
   * @param options For `"message"`: `channel` and `filter`.
   * @returns A function that removes the listener.
   */
  on(
    event: "message",
    listener: (message: Message, channel: string) => void,
    options?: MessageListenerOptions,
  ): () => void;
  /**
   * Listens for bursts of new messages without consuming them.
   *
   * @param event `"arrival"`.
   * @param listener Called once per burst with the channel and its new messages.
   * @returns A function that removes the listener.
   */
  on(event: "arrival", listener: (channel: string, messages: Message[]) => void): () => void;
  /**
   * Listens for changes in this identity's list of channels.
   *
   * @param event `"membership"`.
   * @param listener Called with the channel and the change.
   * @returns A function that removes the listener.
   */
  on(event: "membership", listener: (change: MembershipChange) => void): () => void;
  on(
    event: "message" | "arrival" | "membership",
    listener: (...args: never[]) => void,
    options: MessageListenerOptions = {},
  ): () => void {
    return listen(this.#core, event, listener, options);
  }

  /**
   * Lists this identity's channels.
   *
   * @returns Each channel with its epoch and members.
   */
  async channels(): Promise<ChannelSummary[]> {
    await this.#core.context();
    return [...this.#core.channels.values()].map(summary)
      .sort((a, b) => a.channel.localeCompare(b.channel));
  }

  /**
   * Lists a channel's members.
   *
   * @param channel The channel.
   * @returns Member identities.
   */
  async members(channel: string): Promise<string[]> {
    const { live } = await this.#get(channel);
    return live.engine.members(live.group);
  }

  /**
   * Lists a channel's members with the dids their names are bound to.
   *
   * @param channel The channel.
   * @returns Name, did and fingerprint of each member, in leaf order.
   */
  async roster(channel: string): Promise<Member[]> {
    const { live } = await this.#get(channel);
    return live.engine.roster(live.group);
  }

  /**
   * Removes a member; it cannot decrypt anything sent afterwards.
   *
   * @param channel The channel.
   * @param identity The member to remove.
   */
  async removeMember(channel: string, identity: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    await membership.removeMember(this.#core, ctx, live, identity);
  }

  /**
   * Rotates this member's keys (an MLS self-update commit).
   *
   * @param channel The channel.
   */
  async rotateKeys(channel: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    await membership.rotateKeys(this.#core, ctx, live);
  }

  /**
   * Leaves a channel: proposes this member's removal (another member commits
   * it) and forgets the channel's state here.
   *
   * @param channel The channel.
   */
  async leave(channel: string): Promise<void> {
    const { ctx, live } = await this.#get(channel);
    await membership.leave(this.#core, ctx, live);
  }

  /**
   * An MLS exporter secret of a channel's current epoch (equal across members).
   *
   * @param channel The channel.
   * @param label The exporter label.
   * @param length The secret's length in bytes.
   * @returns The secret.
   */
  async exportSecret(channel: string, label: string, length = 32): Promise<Uint8Array> {
    const { live } = await this.#get(channel);
    return await live.engine.exporter(live.group, label, length);
  }

  /**
   * The channel's shared context: a replicated key-value document every
   * member holds (notes, artifacts, tasks, handoffs, decisions; see
   * `src/context/context.ts`).
   *
   * @param channel The channel (known to this manager).
   * @returns Its context: `get`, `set`, `delete`, `list`, `handoff`, `subscribe`.
   */
  context(channel: string): SharedContext {
    parseChannelName(channel);
    return this.#core.contexts.context(channel);
  }

  /**
   * The channel's audit key, for an auditor: with it (and the relay's URL)
   * `skytale audit verify` reads and checks the channel's audit log without
   * being a member. One key per channel, shared by every member through the
   * shared context, the same across epochs.
   *
   * @param channel The channel (this manager must have `audit: true`).
   * @returns The key, `skt_audit_…`.
   */
  async exportAuditKey(channel: string): Promise<string> {
    await this.#get(channel);
    return await this.#core.audit.exportKey(channel);
  }

  /**
   * Reads the channel's audit log back from the relay and verifies it, after
   * this member's own events got there (waits up to 10 s).
   *
   * @param channel The channel (this manager must have `audit: true`).
   * @returns The verification report, with the entries that could be read.
   */
  async auditReport(channel: string): Promise<AuditReport> {
    await this.#get(channel);
    return await this.#core.audit.report(channel);
  }

  /**
   * Makes an invite token: whoever holds it can join `channel` while this
   * manager runs, with no key package or Welcome copied by hand.
   *
   * @param channel The channel.
   * @param options `ttl` in seconds (default 3600) and `uses` (default 1).
   * @returns The token, `skt_inv_…`.
   */
  async invite(channel: string, options: { ttl?: number; uses?: number } = {}): Promise<string> {
    const { ctx, live } = await this.#get(channel);
    assertActive(this.#core, live);
    return await this.#invites.create(ctx, live, options);
  }

  /**
   * Joins a channel with an invite token from `invite()`: posts an
   * authenticated join request and waits for the inviter to admit this identity.
   *
   * @param channel The channel named in the invite.
   * @param token The token, `skt_inv_…`.
   * @param options `timeout` in seconds to wait for the inviter (default 30).
   */
  async joinWithToken(
    channel: string,
    token: string,
    options: { timeout?: number } = {},
  ): Promise<void> {
    parseChannelName(channel);
    await this.#invites.join(channel, token, options.timeout ?? 30);
  }

  /**
   * Writes every channel's state that is only in memory or in the journal to
   * its record now, flushed to disk. Nothing is lost without it (the journal
   * and the relay cover a crash); it makes the records on disk current, e.g.
   * before copying the data directory.
   */
  async flush(): Promise<void> {
    await flushAll(this.#core, await this.#core.context());
  }

  /** Writes what is only in memory (see {@linkcode flush}) and closes the relay connection. */
  close(): Promise<void> {
    return shutdown(this.#core, this.#invites);
  }

  /**
   * Closes the manager ({@linkcode close}) when an `await using` block ends.
   *
   * @returns When closed.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
