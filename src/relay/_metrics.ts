/**
 * The relay server's counters, its log-append latency histogram, and their
 * Prometheus text (`GET /metrics`).
 *
 * @module
 */

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** The relay's counters (monotonic). */
export interface Counters {
  published: number;
  delivered: number;
  nacked: number;
  frameErrors: number;
  mailboxPuts: number;
  mailboxTakes: number;
  mailboxAcks: number;
  authFailures: number;
  limitBreaches: number;
  acks: number;
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  trimmed: number;
}

/** The gauges read when the text is made. */
export interface Gauges {
  connections: number;
  channels: number;
  subscriptions: number;
}

/** Counters and the append latency histogram of one relay server. */
export class RelayMetrics {
  /** The counters; the server's parts increment them. */
  readonly counters: Counters = {
    published: 0,
    delivered: 0,
    nacked: 0,
    frameErrors: 0,
    mailboxPuts: 0,
    mailboxTakes: 0,
    mailboxAcks: 0,
    authFailures: 0,
    limitBreaches: 0,
    acks: 0,
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    trimmed: 0,
  };
  readonly #latency = { buckets: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };

  /**
   * Records how long one log append took.
   *
   * @param seconds The latency.
   */
  observeAppend(seconds: number): void {
    const l = this.#latency;
    l.count++;
    l.sum += seconds;
    const i = LATENCY_BUCKETS.findIndex((le) => seconds <= le);
    if (i >= 0) l.buckets[i]!++;
  }

  /**
   * The Prometheus exposition text.
   *
   * @param g The gauges now.
   * @returns The text.
   */
  text(g: Gauges): string {
    const m = this.counters;
    const gauges: [string, string, number][] = [
      ["connections", "Open WebSocket connections", g.connections],
      ["channels", "Channels with a subscriber here", g.channels],
      ["subscriptions", "Subscriptions", g.subscriptions],
    ];
    const counters: [string, string, number][] = [
      ["frames_in_total", "Frames received", m.framesIn],
      ["frames_out_total", "Frames sent", m.framesOut],
      ["bytes_in_total", "Bytes received", m.bytesIn],
      ["bytes_out_total", "Bytes sent", m.bytesOut],
      ["published_total", "Entries appended", m.published],
      ["acks_total", "Publishes acked", m.acks],
      ["nacks_total", "Publishes nacked", m.nacked],
      ["nacked_total", "Publishes nacked (old name)", m.nacked],
      ["delivered_total", "Entries delivered", m.delivered],
      ["frame_errors_total", "Malformed frames", m.frameErrors],
      ["auth_failures_total", "Refused credentials", m.authFailures],
      ["limit_breaches_total", "Requests refused by a limit", m.limitBreaches],
      ["mailbox_puts_total", "Mailbox puts", m.mailboxPuts],
      ["mailbox_takes_total", "Mailbox takes", m.mailboxTakes],
      ["mailbox_acks_total", "Mailbox item ids acked", m.mailboxAcks],
      ["retention_trimmed_total", "Entries deleted by age retention", m.trimmed],
    ];
    const text = (type: string) => ([name, help, v]: [string, string, number]) => {
      const n = `skytale_relay_${name}`;
      return `# HELP ${n} ${help}\n# TYPE ${n} ${type}\n${n} ${v}\n`;
    };
    let out = gauges.map(text("gauge")).join("") + counters.map(text("counter")).join("");
    const h = "skytale_relay_log_append_seconds";
    out += `# HELP ${h} Log append latency\n# TYPE ${h} histogram\n`;
    let cum = 0;
    LATENCY_BUCKETS.forEach((le, i) => {
      cum += this.#latency.buckets[i]!;
      out += `${h}_bucket{le="${le}"} ${cum}\n`;
    });
    out += `${h}_bucket{le="+Inf"} ${this.#latency.count}\n`;
    out += `${h}_sum ${this.#latency.sum}\n${h}_count ${this.#latency.count}\n`;
    return out;
  }
}
