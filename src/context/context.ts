/**
 * Shared context: a replicated key-value document per channel that every
 * member holds, carried on the channel as MLS application messages under the
 * layer tag `ctx` (`sendTagged`/`onTagged`; chat never sees it).
 *
 * The document is a map of last-writer-wins registers ordered by hybrid
 * logical clocks (`hlc.ts`): each write (a set, or a delete as a tombstone)
 * carries its timestamp, and every member keeps, per key, the version with
 * the greatest one. Merging is commutative, associative and idempotent, so
 * members converge whatever order, duplication or delay the writes arrive
 * in — two members writing one key at once, or one writing while offline.
 *
 * - **Authorship** comes from MLS: a write is accepted only from the member
 *   whose did made it (its `senderId`).
 * - **Visibility**: an entry with `visibleTo` carries its value sealed with
 *   HPKE (`src/seal.ts`) to each named member's did (and its author's);
 *   other members and the relay hold only the boxes.
 * - **TTL**: an entry past its expiry is gone from `get` and `list` (its
 *   register stays, so an older write cannot bring it back).
 * - **Late joiners** ask for the current state (`sync`) when they join; one
 *   existing member answers with a snapshot sealed to the joiner's did — the
 *   state, not its history. A removed member cannot read anything later.
 * - **Durability**: the document and the writes not yet sent live in a store
 *   blob (`context/<channel>`), written before a write resolves; unsent writes
 *   are retried until the relay takes them.
 * - **Untrusted input**: what other members send (and the store blob) is
 *   parsed with zod schemas (`_schema.ts`); a malformed version is dropped alone.
 *
 * Where things are: this file is the hub the channel manager holds and the
 * public API; `types.ts` the public types, `_channel.ts` one channel's
 * context, `_version.ts` the replicated register (and TTL), `_visibility.ts`
 * the sealing of restricted values and snapshots, `_schema.ts` the parsing.
 *
 * @module
 */
import { InterruptedError } from "../errors.ts";
import { ChannelContext } from "./_channel.ts";
import type { BlobIo, ContextDelivery, ContextHost, SharedContext } from "./types.ts";

/** The public types and constants, from `types.ts`. */
export * from "./types.ts";

/**
 * The shared contexts of one channel manager: made on first use or on the
 * first `ctx` message of a channel, so no write of another member is missed
 * while the application has not asked for the context yet.
 */
export class ContextHub {
  #host: ContextHost;
  #io: BlobIo;
  #contexts = new Map<string, ChannelContext>();
  #closed = false;

  /**
   * @param host The channel manager.
   * @param io Its store's blobs.
   */
  constructor(host: ContextHost, io: BlobIo) {
    this.#host = host;
    this.#io = io;
  }

  #of(channel: string): ChannelContext {
    let c = this.#contexts.get(channel);
    if (!c || c.failed) {
      this.#contexts.set(channel, c = new ChannelContext(channel, this.#host, this.#io));
    }
    return c;
  }

  /**
   * The shared context of a channel (the channel must be known to the manager).
   *
   * @param channel The channel.
   * @returns Its context.
   */
  context(channel: string): SharedContext {
    if (this.#closed) throw new InterruptedError("closed", "This channel manager is closed");
    return this.#of(channel);
  }

  /**
   * Hands a `ctx` message to its channel's context.
   *
   * @param channel The channel.
   * @param d The message.
   */
  receive(channel: string, d: ContextDelivery): void {
    if (!this.#closed) this.#of(channel).receive(d);
  }

  /**
   * Tells the context that this member just joined: it asks for the state.
   *
   * @param channel The channel.
   */
  joined(channel: string): void {
    if (!this.#closed) this.#of(channel).requestSync();
  }

  /** Stops every context's background work. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#contexts.values()].map((c) => c.close()));
  }
}
