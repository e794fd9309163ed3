/**
 * Environment access: the one place that knows how each runtime exposes it.
 *
 * It imports no `node:*` module, so the SDK that uses it loads in a browser
 * tab too: there `process` is absent, every variable reads as unset and log
 * lines go to the console. The home directory (`node:os`) lives in
 * `./home.ts`, which only the CLI and a manager without a `store` load.
 *
 * @module
 */

/** The part of Node's `process` (also a global in Deno 2 and Bun) that this module uses. */
interface ProcessLike {
  env: Record<string, string | undefined>;
  argv: string[];
  stderr: { write(s: string): unknown };
  exit(code: number): never;
  on(signal: string, handler: () => void): unknown;
}

/** The runtime's `process`, or `undefined` in a browser. */
const process: ProcessLike | undefined = (globalThis as { process?: ProcessLike }).process;

/** The runtime's `process`; only what runs a process (a CLI, a server) calls this. */
function proc(): ProcessLike {
  if (process === undefined) throw new TypeError("This needs a process (Deno, Node or Bun)");
  return process;
}

/**
 * Reads an environment variable.
 *
 * @param name The variable's name.
 * @returns Its value, or `undefined` when unset or empty.
 */
export function env(name: string): string | undefined {
  const v = process?.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** Which runtime runs this code (a browser counts as `"node"`: Web APIs, no `Deno`/`Bun`). */
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
  if (process !== undefined) process.stderr.write(line.endsWith("\n") ? line : line + "\n");
  // deno-lint-ignore no-console
  else console.error(line.endsWith("\n") ? line.slice(0, -1) : line);
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
  return proc().argv.slice(2);
}

/**
 * Sets the exit code and exits once pending output is flushed.
 *
 * @param code The exit code.
 */
export function exit(code: number): never {
  return proc().exit(code);
}

/**
 * Registers a handler for SIGINT and SIGTERM.
 *
 * @param handler Called once with the signal's name.
 */
export function onShutdownSignal(handler: (signal: string) => void): void {
  let fired = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    proc().on(sig, () => {
      if (fired) return;
      fired = true;
      handler(sig);
    });
  }
}
