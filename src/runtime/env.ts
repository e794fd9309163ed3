/**
 * Environment access: the one place that knows how each runtime exposes it.
 *
 * @module
 */
import process from "node:process";
import os from "node:os";
import path from "node:path";

/**
 * Reads an environment variable.
 *
 * @param name The variable's name.
 * @returns Its value, or `undefined` when unset or empty.
 */
export function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * The user's home directory.
 *
 * @returns An absolute path.
 */
export function homeDir(): string {
  return os.homedir();
}

/**
 * The user's one Skytale place (`SKYTALE_HOME`, default `~/.skytale`): the
 * embedded local relay's log (`relay/`) and secret (`local.key`), and the
 * default data dir.
 *
 * @returns An absolute path (unless `SKYTALE_HOME` is relative).
 */
export function skytaleHome(): string {
  return env("SKYTALE_HOME") ?? path.join(os.homedir(), ".skytale");
}

/** Which runtime runs this code. */
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";

/**
 * Writes a line to stderr (logs never go to stdout, which may carry a protocol).
 *
 * @param line The text to write.
 */
export function logLine(line: string): void {
  process.stderr.write(line.endsWith("\n") ? line : line + "\n");
  for (const tap of logTaps) {
    try {
      tap(line);
    } catch {
      // a tap never breaks logging
    }
  }
}

const logTaps = new Set<(line: string) => void>();

/**
 * Also hands every {@linkcode logLine} to `tap` (the MCP server forwards them
 * to clients as log notifications).
 *
 * @param tap Called with each line, after it went to stderr.
 * @returns A function that removes the tap.
 */
export function onLogLine(tap: (line: string) => void): () => void {
  logTaps.add(tap);
  return () => void logTaps.delete(tap);
}

/**
 * The command-line arguments after the script.
 *
 * @returns The arguments.
 */
export function cliArgs(): string[] {
  return process.argv.slice(2);
}

/**
 * Sets the exit code and exits once pending output is flushed.
 *
 * @param code The exit code.
 */
export function exit(code: number): never {
  process.exit(code);
}

/**
 * Registers a handler for SIGINT and SIGTERM.
 *
 * @param handler Called once with the signal's name.
 */
export function onShutdownSignal(handler: (signal: string) => void): void {
  let fired = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (fired) return;
      fired = true;
      handler(sig);
    });
  }
}
