/**
 * Helpers shared by the client and serving ends of the MCP transport.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";

/** How long a closing end waits for its `bye` frame to be sent, in ms. */
export const BYE_WAIT_MS = 2000;
/** At most this many senders are remembered per transport for "ignored" log lines. */
const MAX_LOGGED = 64;

/**
 * Logs `line` once per `key` (bounded), so a noisy member cannot flood stderr.
 *
 * @param seen The keys logged so far (filled in).
 * @param key What makes a line new.
 * @param line The line.
 */
export function logOnce(seen: Set<string>, key: string, line: string): void {
  if (seen.has(key) || seen.size >= MAX_LOGGED) return;
  seen.add(key);
  logLine(line);
}

/**
 * An `Error` for anything thrown.
 *
 * @param e What was thrown.
 * @returns It, or an `Error` with its text.
 */
export function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Resolves after `ms`, or when `p` settles, whichever is first; never rejects.
 *
 * @param p The promise.
 * @param ms The bound.
 * @returns When either happened.
 */
export function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(() => {}, () => {}),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]).finally(() => clearTimeout(timer));
}
