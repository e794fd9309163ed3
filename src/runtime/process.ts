/**
 * Child processes that speak a line protocol on stdin/stdout (stdio MCP
 * servers), over `node:child_process`, which Deno, Node and Bun all provide.
 * The child's stderr goes to ours, so its logs stay visible.
 *
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";

/** How a child process ended. */
export interface ChildExit {
  /** The exit code, or `null` when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** Why it could not be started, if it never ran (e.g. `spawn foo ENOENT`). */
  error?: string;
}

/** A running child process spoken to in lines. */
export interface LineProcess {
  /** The process id, if it started. */
  readonly pid: number | undefined;
  /** Resolves once when the child has exited (or failed to start). */
  readonly exited: Promise<ChildExit>;
  /**
   * Writes one line (a newline is added) to the child's stdin, respecting backpressure.
   *
   * @param line The text, without a newline.
   * @returns When the line was handed to the pipe.
   */
  writeLine(line: string): Promise<void>;
  /**
   * Ends the child: closes its stdin, then SIGTERM after `graceMs`, SIGKILL after twice that.
   *
   * @param graceMs How long to wait after closing stdin (default 2000).
   * @returns When it has exited.
   */
  stop(graceMs?: number): Promise<ChildExit>;
}

/** Options of {@linkcode spawnLineProcess}. */
export interface SpawnLineOptions {
  /** Called with each complete stdout line (without its newline). */
  onLine: (line: string) => void;
  /** Extra environment variables (the rest is inherited). */
  env?: Record<string, string>;
  /** The working directory (default: ours). */
  cwd?: string;
}

/**
 * Starts `command args…` with piped stdin/stdout and our stderr.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param options The stdout line handler, environment and directory.
 * @returns The running child.
 */
export function spawnLineProcess(
  command: string,
  args: string[],
  options: SpawnLineOptions,
): LineProcess {
  const child = spawn(command, args, {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, ...options.env },
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  });
  let resolveExit!: (e: ChildExit) => void;
  const exited = new Promise<ChildExit>((r) => (resolveExit = r));
  let done = false;
  const finish = (e: ChildExit) => {
    if (done) return;
    done = true;
    resolveExit(e);
  };
  child.on("error", (err) => finish({ code: null, signal: null, error: err.message }));
  // "close", not "exit": by then stdout is drained, so no last answer is lost.
  child.on("close", (code, signal) => finish({ code, signal }));
  let buf = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (line.trim() !== "") options.onLine(line);
    }
  });
  child.stdin!.on("error", () => {}); // EPIPE after the child died: its exit reports it
  return {
    get pid() {
      return child.pid;
    },
    exited,
    writeLine(line) {
      if (done || !child.stdin!.writable) return Promise.resolve();
      return new Promise<void>((resolve) => {
        if (child.stdin!.write(line + "\n")) resolve();
        else child.stdin!.once("drain", () => resolve());
        // A dead child never drains: its exit ends the wait too.
        void exited.then(() => resolve());
      });
    },
    async stop(graceMs = 2000) {
      if (!done) {
        child.stdin!.end();
        const term = setTimeout(() => child.kill("SIGTERM"), graceMs);
        const kill = setTimeout(() => child.kill("SIGKILL"), graceMs * 2);
        await exited;
        clearTimeout(term);
        clearTimeout(kill);
      }
      return await exited;
    },
  };
}

/**
 * The command that runs a `.ts` file under the runtime running this code
 * (`deno run -A --quiet`, `node`, `bun`).
 *
 * @param script The path of the script.
 * @returns The program and its leading arguments.
 */
export function runtimeScriptCommand(script: string): { command: string; args: string[] } {
  const pre = "Deno" in globalThis ? ["run", "-A", "--quiet"] : [];
  return { command: process.execPath, args: [...pre, script] };
}
