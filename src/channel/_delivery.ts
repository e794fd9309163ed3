/**
 * Handing messages to the application, exactly once: `receive()`, the
 * `messages()` iterator and `"message"` listeners share each channel's buffer;
 * whatever takes a message journals it as delivered, flushed, before it has it.
 * Also the other listeners (`"arrival"`, `"membership"`) and the read-only
 * views (`history`, `afterSeq`).
 *
 * @module
 */
import { SkytaleError, ValidationError } from "../errors.ts";
import { parseChannelName } from "../validate.ts";
import type { StoredMessage } from "../store/types.ts";
import { logLine } from "../runtime/env.ts";
import { errorMessage } from "../_util.ts";
import {
  type Core,
  type Ctx,
  type Listener,
  type Live,
  notify,
  publicMessage,
  save,
  snapshotLater,
  waitFor,
} from "./_live.ts";
import type { MembershipChange, Message, MessageListenerOptions, ReceiveOptions } from "./types.ts";

/** The longest `receive()` wait, in seconds. */
export const MAX_RECEIVE_SECONDS = 300;

/**
 * Checks a wait in seconds (`receive`, `wait`).
 *
 * @throws {ValidationError} `invalid_argument` unless it is 0 to {@linkcode MAX_RECEIVE_SECONDS}.
 */
export function checkTimeout(timeout: unknown): number {
  if (
    typeof timeout !== "number" || !Number.isFinite(timeout) || timeout < 0 ||
    timeout > MAX_RECEIVE_SECONDS
  ) {
    throw new ValidationError(
      "invalid_argument",
      `Timeout must be a number of seconds from 0 to ${MAX_RECEIVE_SECONDS}, got ${
        String(timeout)
      }`,
    );
  }
  return timeout;
}

/** Checks `receive()`'s options; returns the wait in ms and the most messages to return. */
export function receiveLimits(options: ReceiveOptions): { ms: number; max: number } {
  const timeout = checkTimeout(options.timeout ?? 5);
  const max = options.max ?? Infinity;
  if (max !== Infinity && (!Number.isInteger(max) || max < 1)) {
    throw new ValidationError("invalid_argument", `max must be a positive integer, got ${max}`);
  }
  const after = options.afterSeq;
  if (after !== undefined && (!Number.isInteger(after) || after < 0)) {
    throw new ValidationError(
      "invalid_argument",
      `afterSeq must be a sequence number (an integer from 0), got ${after}`,
    );
  }
  return { ms: timeout * 1000, max };
}

/**
 * Waits (up to `ms`) for buffered messages and consumes up to `max` of them.
 * Another consumer may take what woke this one: then it waits on.
 */
export async function take(
  core: Core,
  ctx: Ctx,
  live: Live,
  ms: number,
  signal: AbortSignal | undefined,
  max = Infinity,
): Promise<StoredMessage[]> {
  const end = Date.now() + ms;
  for (;;) {
    await waitFor(
      core,
      live,
      () => live.record.buffer.length > 0,
      Math.max(0, end - Date.now()),
      signal,
    );
    const out = await live.mutex.run(async () => {
      const taken = live.record.buffer.slice(0, max);
      await handOut(core, ctx, live, taken);
      return taken;
    });
    if (out.length > 0 || Date.now() >= end) return out;
  }
}

/**
 * Hands buffered messages to the application (under the channel's mutex):
 * journals, flushed, that they are delivered, then takes them off the buffer.
 * Exactly once: after a crash, neither the buffer nor a replay brings them back.
 */
async function handOut(core: Core, ctx: Ctx, live: Live, taken: StoredMessage[]): Promise<void> {
  if (taken.length === 0) return;
  const seqs = new Set(taken.map((m) => m.seq));
  const rest = live.record.buffer.filter((m) => !seqs.has(m.seq));
  const delivered = Math.max(live.delivered, ...seqs);
  // Messages left behind below the new mark (a filtered listener took later ones).
  const held = rest.filter((m) => m.seq <= delivered).map((m) => m.seq);
  await ctx.store.appendJournal(
    live.record.channel,
    held.length > 0 ? { delivered, held } : { delivered },
    { durable: true },
  );
  live.delivered = delivered;
  live.held = new Set(held);
  live.record.buffer = rest;
  live.dirty++;
  await snapshotLater(core, ctx, live, false);
}

/**
 * Puts messages an iterator took but never yielded back at the front of the
 * buffer, and writes the record at once (rare: a loop left mid-burst).
 */
async function putBack(
  core: Core,
  ctx: Ctx,
  live: Live,
  back: StoredMessage[],
): Promise<void> {
  await live.mutex.run(async () => {
    const buf = [...back, ...live.record.buffer].sort((a, b) => a.seq - b.seq);
    live.record.buffer = buf;
    live.held = new Set(buf.filter((m) => m.seq <= live.delivered).map((m) => m.seq));
    if (!core.closed) await save(ctx, live);
  });
  notify(live);
}

/** Messages after `seq` in the recent history and the buffer, oldest first. */
export function since(live: Live, seq: number): StoredMessage[] {
  const bySeq = new Map<number, StoredMessage>();
  for (const m of live.recent) if (m.seq > seq) bySeq.set(m.seq, m);
  for (const m of live.record.buffer) if (m.seq > seq) bySeq.set(m.seq, m);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** `SkytaleChannelManager.messages` once the channel is known: consumes as it yields. */
export async function* iterate(
  core: Core,
  ctx: Ctx,
  live: Live,
  signal: AbortSignal | undefined,
): AsyncGenerator<Message, void, undefined> {
  let batch: StoredMessage[] = [];
  try {
    while (!signal?.aborted && !core.closed) {
      try {
        batch = await take(core, ctx, live, MAX_RECEIVE_SECONDS * 1000, signal);
      } catch (e) {
        if (e instanceof SkytaleError && (e.code === "aborted" || e.code === "closed")) return;
        throw e;
      }
      while (batch.length > 0) yield publicMessage(batch.shift()!);
    }
  } finally {
    if (batch.length > 0) await putBack(core, ctx, live, batch);
  }
}

/** Registers a listener (see `SkytaleChannelManager.on`); returns what removes it. */
export function listen(
  core: Core,
  event: "message" | "arrival" | "membership",
  listener: (...args: never[]) => void,
  options: MessageListenerOptions,
): () => void {
  if (event === "arrival") {
    const fn = listener as (channel: string, messages: Message[]) => void;
    core.arrivals.add(fn);
    return () => void core.arrivals.delete(fn);
  }
  if (event === "membership") {
    const fn = listener as (change: MembershipChange) => void;
    core.membership.add(fn);
    return () => void core.membership.delete(fn);
  }
  if (event !== "message") {
    throw new ValidationError("invalid_argument", `Unknown event "${String(event)}"`);
  }
  if (options.channel !== undefined) parseChannelName(options.channel);
  const l: Listener = {
    channel: options.channel,
    filter: options.filter,
    fn: listener as (m: Message, channel: string) => void,
  };
  core.listeners.add(l);
  // What is buffered already goes to it too.
  const ctx = core.ctx;
  if (ctx) void ctx.then((c) => drainAll(core, c), () => {});
  return () => void core.listeners.delete(l);
}

/** Hands what is buffered in every channel to the `"message"` listeners. */
export function drainAll(core: Core, ctx: Ctx): void {
  if (core.listeners.size === 0) return;
  for (const live of core.channels.values()) {
    void drain(core, ctx, live).catch((e) =>
      logLine(`skytale: handing out "${live.record.channel}" failed: ${errorMessage(e)}`)
    );
  }
}

/** Hands what the `"message"` listeners accept to them (see `SkytaleChannelManager.on`). */
export async function drain(core: Core, ctx: Ctx, live: Live): Promise<void> {
  const channel = live.record.channel;
  const ls = [...core.listeners].filter((l) => l.channel === undefined || l.channel === channel);
  if (ls.length === 0 || live.record.buffer.length === 0) return;
  const accepts = (l: Listener, m: Message) => {
    try {
      return !l.filter || l.filter(m, channel);
    } catch {
      return false;
    }
  };
  const handed = await live.mutex.run(async () => {
    if (core.closed) return [];
    const take = live.record.buffer.filter((m) => ls.some((l) => accepts(l, publicMessage(m))));
    await handOut(core, ctx, live, take);
    return take;
  });
  for (const stored of handed) {
    const m = publicMessage(stored);
    for (const l of ls) {
      if (!accepts(l, m)) continue;
      try {
        l.fn(m, channel);
      } catch (e) {
        logLine(`skytale: a "message" listener failed: ${errorMessage(e)}`);
      }
    }
  }
}

/** Tells the `"arrival"` listeners of a burst of new messages. */
export function announce(core: Core, channel: string, fresh: StoredMessage[]): void {
  const ms = fresh.map(publicMessage);
  for (const a of [...core.arrivals]) {
    try {
      a(channel, ms);
    } catch (err) {
      logLine(`skytale: an "arrival" listener failed: ${errorMessage(err)}`);
    }
  }
}

/** Tells the `"membership"` listeners of a change. */
export function emitMembership(core: Core, change: MembershipChange): void {
  for (const fn of [...core.membership]) {
    try {
      fn(change);
    } catch (e) {
      logLine(`skytale: a "membership" listener failed: ${errorMessage(e)}`);
    }
  }
}
