/**
 * Stage timestamps for the latency budget of `bench/e2e.ts`: where a message
 * spends its time between `send()` and `receive()`.
 *
 * Each probe point is `probes.sink?.(stage, id)`. Nothing installs a sink in
 * normal runs, and an optional call on `undefined` evaluates none of its
 * arguments, so a probe point costs one property read and logs nothing. A
 * benchmark installs {@linkcode recordProbes} in its own process; a relay
 * process does when `SKYTALE_BENCH_PROBES` names a file (read once, at start,
 * by `skytale relay`), and writes what it recorded there when it stops.
 *
 * Messages are keyed by their 16-byte publish id, which the sender chooses and
 * the relay and the receivers see. Times are wall-clock milliseconds with
 * sub-millisecond resolution (`performance.timeOrigin + performance.now()`),
 * so stamps from processes on one machine can be compared.
 *
 * @module
 */

/** The stages a message passes, in order. */
export const Stages = {
  /** Sender: the journal durably reserves its send generation (a no-op for 63 of 64 sends). */
  reserved: "reserved",
  /** Sender: MLS encrypted it. */
  encrypted: "encrypted",
  /** Relay: the publish frame was decoded and checked. */
  relayReceived: "relay received",
  /** Relay: the log appended it (for SQLite: committed). */
  relayStored: "relay stored",
  /** Relay: the deliver frames were handed to every subscriber's socket. */
  relayFannedOut: "relay fanned out",
  /** Sender: `publish` resolved with the relay's ack. */
  acked: "acked",
  /** Receiver: the manager got the entry from its relay client. */
  arrived: "arrived",
  /** Receiver: MLS decrypted it. */
  decrypted: "decrypted",
  /** Receiver: its burst was applied and written (if a snapshot was due); `receive()` is woken. */
  buffered: "buffered",
} as const;

/** One stage of {@linkcode Stages}. */
export type Stage = typeof Stages[keyof typeof Stages];

/**
 * Records that the message with publish id `id` reached `stage`.
 *
 * @param stage The stage.
 * @param id The message's publish id.
 * @param at When, as `performance.now()` (default: now).
 */
export type ProbeSink = (stage: Stage, id: Uint8Array, at?: number) => void;

/** The installed sink, if any (none in normal runs). */
export const probes: { sink?: ProbeSink | undefined } = {};

/** One recorded stamp: stage, publish id (hex), wall-clock ms. */
export type ProbeStamp = [stage: Stage, id: string, ms: number];

/** What {@linkcode recordProbes} returns. */
export interface ProbeRecording {
  /** The stamps so far, in the order they were made. */
  readonly stamps: ProbeStamp[];
  /** Uninstalls the sink (if it is still the installed one). */
  stop(): void;
}

/**
 * Installs a sink that keeps every stamp in memory.
 *
 * @returns The recording.
 */
export function recordProbes(): ProbeRecording {
  const stamps: ProbeStamp[] = [];
  const origin = performance.timeOrigin;
  const sink: ProbeSink = (stage, id, at = performance.now()) => {
    stamps.push([stage, id.toHex(), origin + at]);
  };
  probes.sink = sink;
  return {
    stamps,
    stop() {
      if (probes.sink === sink) probes.sink = undefined;
    },
  };
}
