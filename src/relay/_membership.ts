/**
 * Who may use a channel on the relay server: a session of an organisation
 * only that organisation's channels, and a channel the relay validates (see
 * `_commits.ts`) only a connection that proved (`prove`: an Ed25519
 * signature over its nonce) the identity key of a current member.
 *
 * @module
 */
import { AuthError } from "../errors.ts";
import { parseChannelName } from "../validate.ts";
import { type FrameOf, PROVE_CONTEXT } from "./protocol.ts";
import type { CommitGate } from "./_commits.ts";
import type { Conn, RelayContext } from "./_conn.ts";

/** How many identity keys one connection may prove (one per agent it carries). */
const MAX_PROVEN_KEYS = 16;

/**
 * Refuses a channel outside the session's organisation.
 *
 * @param c The connection.
 * @param channel The channel.
 * @throws {AuthError} when the channel is another organisation's.
 */
export function checkChannel(c: Conn, channel: string): void {
  const { org } = parseChannelName(channel);
  const want = c.session?.org;
  if (want !== undefined && org !== want) {
    throw new AuthError(`Channel "${channel}" is not in organisation "${want}"`);
  }
}

async function _verifies(c: Conn, f: FrameOf<"prove">): Promise<boolean> {
  if (f.publicKey.length !== 32 || f.signature.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      f.publicKey as BufferSource,
      "Ed25519",
      false,
      ["verify"],
    );
    const signed = new Uint8Array([...PROVE_CONTEXT, ...c.nonce]);
    return await crypto.subtle.verify("Ed25519", key, f.signature as BufferSource, signed);
  } catch {
    return false;
  }
}

/** Membership checks of one relay server. */
export class Membership {
  readonly #ctx: RelayContext;
  readonly #gate: CommitGate;

  /**
   * Creates it.
   *
   * @param ctx How to answer.
   * @param gate The commit gate, which knows each validated channel's members.
   */
  constructor(ctx: RelayContext, gate: CommitGate) {
    this.#ctx = ctx;
    this.#gate = gate;
  }

  /**
   * Records an identity key the connection proved it holds (a signature over its nonce).
   *
   * @param c The connection.
   * @param f The frame.
   */
  async prove(c: Conn, f: FrameOf<"prove">): Promise<void> {
    if (!await _verifies(c, f)) {
      this.#ctx.metrics.authFailures++;
      this.#ctx.logger("warn", "membership proof failed", { remote: c.ws.remote });
      return this.#ctx.error(c, f.reqId, "auth", "The proof does not verify for this connection");
    }
    const same = (k: Uint8Array) => k.every((x, i) => x === f.publicKey[i]);
    if (!c.keys.some(same)) {
      if (c.keys.length >= MAX_PROVEN_KEYS) {
        return this.#ctx.limitError(
          c,
          f.reqId,
          "proven_keys",
          `At most ${MAX_PROVEN_KEYS} identity keys per connection`,
        );
      }
      c.keys.push(f.publicKey.slice());
    }
    this.#ctx.send(c, { type: "ok", reqId: f.reqId });
  }

  /**
   * Whether the connection may read or publish a channel: any connection for
   * a channel the relay does not validate; otherwise only one that proved the
   * key of a current member. A check holds until the channel's epoch moves.
   *
   * @param c The connection.
   * @param channel The channel.
   * @returns Whether it may.
   */
  async mayUse(c: Conn, channel: string): Promise<boolean> {
    if (this.#gate.knownOpen(channel)) return true; // not validated: no membership to check
    const known = this.#gate.knownEpoch(channel);
    if (known !== undefined && c.memberOf.get(channel) === known) return true;
    const member = await this.#gate.members(channel);
    if (member === undefined) return true; // not validated: no membership to check
    if (c.keys.some(member)) {
      const epoch = this.#gate.knownEpoch(channel);
      if (epoch !== undefined) c.memberOf.set(channel, epoch);
      return true;
    }
    c.memberOf.delete(channel);
    return false;
  }

  /**
   * Answers a request of a connection that is no member.
   *
   * @param c The connection.
   * @param reqId The request.
   * @param channel The channel.
   * @param what What it asked to do (`read`, `publish to`).
   */
  notMember(c: Conn, reqId: number, channel: string, what: string): void {
    this.#ctx.metrics.authFailures++;
    this.#ctx.logger("warn", "refused a non-member", { channel, what, remote: c.ws.remote });
    this.#ctx.error(
      c,
      reqId,
      "auth",
      `Only members of "${channel}" may ${what} it: this connection proved no member's key`,
    );
  }
}
