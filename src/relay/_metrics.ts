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
    const lines: [string, string, string, number][] = [
      ["skytale_relay_connections", "gauge", "Open WebSocket connections", g.connections],
      ["skytale_relay_channels", "gauge", "Channels with a subscriber here", g.channels],
      ["skytale_relay_subscriptions", "gauge", "Subscriptions", g.subscriptions],
      ["skytale_relay_frames_in_total", "counter", "Frames received", m.framesIn],
      ["skytale_relay_frames_out_total", "counter", "Frames sent", m.framesOut],
      ["skytale_relay_bytes_in_total", "counter", "Bytes received", m.bytesIn],
      ["skytale_relay_bytes_out_total", "counter", "Bytes sent", m.bytesOut],
      ["skytale_relay_published_total", "counter", "Entries appended", m.published],
      ["skytale_relay_acks_total", "counter", "Publishes acked", m.acks],
      ["skytale_relay_nacks_total", "counter", "Publishes nacked", m.nacked],
      ["skytale_relay_nacked_total", "counter", "Publishes nacked (old name)", m.nacked],
      ["skytale_relay_delivered_total", "counter", "Entries delivered", m.delivered],
      ["skytale_relay_frame_errors_total", "counter", "Malformed frames", m.frameErrors],
      ["skytale_relay_auth_failures_total", "counter", "Refused credentials", m.authFailures],
      [
        "skytale_relay_limit_breaches_total",
        "counter",
        "Requests refused by a limit",
        m.limitBreaches,
      ],
      ["skytale_relay_mailbox_puts_total", "counter", "Mailbox puts", m.mailboxPuts],
      ["skytale_relay_mailbox_takes_total", "counter", "Mailbox takes", m.mailboxTakes],
      ["skytale_relay_mailbox_acks_total", "counter", "Mailbox item ids acked", m.mailboxAcks],
      [
        "skytale_relay_retention_trimmed_total",
        "counter",
        "Entries deleted by age retention",
        m.trimmed,
      ],
    ];
    let out = lines.map(([n, t, h, v]) => `# HELP ${n} ${h}\n# TYPE ${n} ${t}\n${n} ${v}\n`).join(
      "",
    );
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
