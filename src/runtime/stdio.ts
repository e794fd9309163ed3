/**
 * The process's standard streams, for protocols spoken over stdin/stdout
 * (the MCP stdio transport). The one place that knows how each runtime
 * exposes them: Deno, Node and Bun all provide `node:process` streams.
 *
 * @module
 */
import process from "node:process";
import type { Readable, Writable } from "node:stream";

/** The process's stdin and stdout as Node-style streams. */
export interface ProcessStdio {
  /** Standard input. */
  stdin: Readable;
  /** Standard output: reserve it for the protocol; logs go to stderr. */
  stdout: Writable;
}

/**
 * The process's stdin and stdout.
 *
 * @returns The two streams.
 */
export function processStdio(): ProcessStdio {
  return { stdin: process.stdin, stdout: process.stdout };
}

/**
 * Calls `handler` once when stdin reaches its end or is closed (the peer
 * closed the pipe), e.g. an MCP client that quit.
 *
 * @param handler Called at most once.
 */
export function onStdinEnd(handler: () => void): void {
  let fired = false;
  const fire = () => {
    if (fired) return;
    fired = true;
    handler();
  };
  process.stdin.once("end", fire);
  process.stdin.once("close", fire);
}

/**
 * Stops reading stdin so that it no longer keeps the process alive.
 */
export function releaseStdin(): void {
  process.stdin.pause();
  const s = process.stdin as { unref?: () => void };
  s.unref?.();
}
