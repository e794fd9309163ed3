/**
 * The relay server's rate limits and per-organisation quotas: a token bucket
 * per connection and one per organisation (all its connections together), and
 * each organisation's connection and channel counts.
 *
 * @module
 */
import type { Conn, Org, RelayContext } from "./_conn.ts";

/** Publish rate limits and organisation quotas. */
export class Quotas {
  readonly #ctx: RelayContext;
  /** Per-org quota use (orgs of authenticated sessions only). */
  readonly #orgs = new Map<string, Org>();

  /**
   * Creates it.
   *
   * @param ctx The limits, clock and how to answer.
   */
  constructor(ctx: RelayContext) {
    this.#ctx = ctx;
  }

  /**
   * The quota use of an organisation, created on first use.
   *
   * @param name The org.
   * @returns Its use.
   */
  org(name: string): Org {
    let o = this.#orgs.get(name);
    if (!o) {
      const burst = this.#ctx.limits.orgPublishBurst;
      o = { conns: 0, channels: 0, tokens: burst, refilled: this.#ctx.now() };
      this.#orgs.set(name, o);
    }
    return o;
  }

  /**
   * Takes one publish (or mailbox put) from the connection's bucket and its
   * org's; answers `error limit` when either is empty.
   *
   * @param c The connection.
   * @param reqId The request being answered.
   * @returns Whether the publish may go ahead.
   */
  takePublish(c: Conn, reqId: number): boolean {
    const l = this.#ctx.limits;
    if (!this.#take(c, l.publishBurst, l.publishPerSecond)) {
      this.#ctx.limitError(
        c,
        reqId,
        "publish_rate",
        `Publish rate limit of ${l.publishPerSecond} per second exceeded`,
      );
      return false;
    }
    if (c.org && !this.#take(c.org, l.orgPublishBurst, l.orgPublishPerSecond)) {
      this.#ctx.limitError(
        c,
        reqId,
        "org_publish_rate",
        `Publish rate limit of organisation "${c.session?.org ?? ""}" of ` +
          `${l.orgPublishPerSecond} per second exceeded (--org-publish-rate)`,
      );
      return false;
    }
    return true;
  }

  #take(b: { tokens: number; refilled: number }, burst: number, perSecond: number): boolean {
    const now = this.#ctx.now();
    b.tokens = Math.min(burst, b.tokens + ((now - b.refilled) / 1000) * perSecond);
    b.refilled = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
