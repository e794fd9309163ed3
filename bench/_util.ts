/**
 * Helpers shared by the benchmarks that need real processes: spawning our
 * entry points under the runtime running the benchmark, a relay process,
 * child scripts that talk JSON lines over stdio, RSS of a process, percentiles.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import fsp from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { clientWebSocket } from "../src/runtime/websocket.ts";

/** The project root. */
export const ROOT: string = path.resolve(
  decodeURIComponent(new URL(".", import.meta.url).pathname),
  "..",
);

/**
 * The command and leading arguments that run a `.ts` file under the runtime
 * running this benchmark.
 *
 * @returns `[executable, args]`.
 */
export function runtimeCommand(): [string, string[]] {
  if ("Deno" in globalThis) return [process.execPath, ["run", "-A", "--quiet"]];
  return [process.execPath, []];
}

/**
 * Makes a fresh temporary directory.
 *
 * @param prefix The name prefix.
 * @returns Its path.
 */
export async function tempDir(prefix = "skytale-bench-"): Promise<string> {
  return await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Removes a directory tree, ignoring errors.
 *
 * @param dir The directory.
 * @returns When done.
 */
export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
}

/** A spawned script: its stderr is collected, stdout read as JSON lines. */
export interface Child {
  /** The process. */
  readonly proc: ChildProcess;
  /** Its pid. */
  readonly pid: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  /**
   * Waits for a stderr match.
   *
   * @param re The pattern.
   * @param ms How long to wait.
   * @returns The match.
   */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /**
   * Reads the next JSON line from stdout.
   *
   * @param ms How long to wait.
   * @returns The parsed value.
   */
  next<T = Record<string, unknown>>(ms?: number): Promise<T>;
  /**
   * Writes a JSON line to stdin.
   *
   * @param v The value.
   */
  send(v: unknown): void;
  /**
   * Stops it (SIGTERM, then SIGKILL after 5 s).
   *
   * @returns When it exited.
   */
  stop(): Promise<void>;
}

/**
 * Spawns a `.ts` file (relative to the root) under the current runtime. With
 * `SKYTALE_BENCH_PROF=DIR` set, a child on Deno or Node writes a V8 CPU
 * profile into DIR when it exits (`--cpu-prof`), to see where a relay or peer
 * process spends its time under the bench's load.
 *
 * @param script The script path relative to the project root.
 * @param args Its arguments.
 * @param env Extra environment variables.
 * @returns The child.
 */
export function spawnChild(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Child {
  const [cmd, pre] = runtimeCommand();
  const prof = process.env.SKYTALE_BENCH_PROF;
  const flags = prof && !("Bun" in globalThis) ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [];
  const proc = spawn(cmd, [...pre, ...flags, path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  const lines: string[] = [];
  const lineWaiters: ((l: string) => void)[] = [];
  const errWaiters = new Set<() => void>();
  const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()));
  proc.stderr!.setEncoding("utf8");
  proc.stdout!.setEncoding("utf8");
  proc.stderr!.on("data", (d: string) => {
    err += d;
    if (process.env.SKYTALE_BENCH_VERBOSE) process.stderr.write(d);
    for (const w of [...errWaiters]) w();
  });
  proc.stdout!.on("data", (d: string) => {
    out += d;
    let i: number;
    while ((i = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      const w = lineWaiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  return {
    proc,
    pid: proc.pid!,
    stderr: () => err,
    waitFor(re, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = err.match(re);
          if (m) {
            errWaiters.delete(check);
            clearTimeout(timer);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          errWaiters.delete(check);
          reject(new Error(`Timed out waiting for ${re}; stderr:\n${err}`));
        }, ms);
        errWaiters.add(check);
        exited.then(() => {
          if (!errWaiters.has(check)) return;
          errWaiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`${script} exited while waiting for ${re}; stderr:\n${err}`));
        });
        check();
      });
    },
    next<T>(ms = 120_000): Promise<T> {
      const l = lines.shift();
      if (l !== undefined) return Promise.resolve(JSON.parse(l) as T);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          reject(new Error(`Timed out waiting for a line from ${script}; stderr:\n${err}`));
        }, ms);
        const w = (line: string) => {
          clearTimeout(timer);
          resolve(JSON.parse(line) as T);
        };
        lineWaiters.push(w);
        exited.then(() => {
          if (!lineWaiters.includes(w)) return;
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          clearTimeout(timer);
          reject(new Error(`${script} exited; stderr:\n${err}`));
        });
      });
    },
    send(v) {
      proc.stdin!.write(JSON.stringify(v) + "\n");
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A relay process on 127.0.0.1. */
export interface RelayProcess {
  /** Its WebSocket URL. */
  url: string;
  /** The child process. */
  child: Child;
  /**
   * Stops it and removes its data directory.
   *
   * @returns When done.
   */
  stop(): Promise<void>;
}

/**
 * Starts `mod.ts relay` on an ephemeral port with its log in a temp directory.
 *
 * @param store `sqlite` (the default of `skytale relay`) or `memory`.
 * @param env Extra environment variables of the relay process.
 * @param extraArgs More `skytale relay` options.
 * @returns The running relay.
 */
export async function startRelayProcess(
  store: "sqlite" | "memory" = "sqlite",
  env: Record<string, string> = {},
  extraArgs: string[] = [],
): Promise<RelayProcess> {
  const dir = await tempDir("skytale-bench-relay-");
  const child = spawnChild("mod.ts", [
    "relay",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--data-dir",
    dir,
    "--store",
    store,
    ...extraArgs,
  ], env);
  const m = await child.waitFor(/listening on (ws:\/\/127\.0\.0\.1:\d+)/);
  return {
    url: m[1]!,
    child,
    async stop() {
      await child.stop();
      await removeDir(dir);
    },
  };
}

/** A bare WebSocket server (`bench/_ws_server.ts`, the same `serve.ts`) in its own process. */
export interface BareServer {
  /** Its WebSocket URL. */
  url: string;
  /** The child process. */
  child: Child;
}

/**
 * Starts `bench/_ws_server.ts`: echo, or broadcast to every other connection.
 *
 * @param mode `echo` or `broadcast`.
 * @returns The running server.
 */
export async function startBareServer(mode: "echo" | "broadcast"): Promise<BareServer> {
  const child = spawnChild("bench/_ws_server.ts", [mode]);
  const m = await child.waitFor(/listening on (ws:\/\/127\.0\.0\.1:\d+)/);
  return { url: m[1]!, child };
}

/**
 * The resident set size of a process, from `/proc` (Linux) or `ps`.
 *
 * @param pid The process id.
 * @returns RSS in bytes.
 */
export async function rssOf(pid: number): Promise<number> {
  try {
    const s = await fsp.readFile(`/proc/${pid}/status`, "utf8");
    const m = s.match(/VmRSS:\s+(\d+)\s+kB/);
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  const { execFileSync } = await import("node:child_process");
  return Number(execFileSync("ps", ["-o", "rss=", "-p", String(pid)]).toString().trim()) * 1024;
}

/**
 * Opens a WebSocket (binary type `arraybuffer`) with the client class the
 * relay client uses (`src/runtime/websocket.ts`) and waits until it is open.
 *
 * @param url The URL.
 * @returns The open socket.
 */
export async function openSocket(url: string): Promise<WebSocket> {
  const Impl = await clientWebSocket();
  return await new Promise((resolve, reject) => {
    const ws = new Impl(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.onopen = ws.onerror = null;
      resolve(ws);
    };
    ws.onerror = () => reject(new Error(`Cannot connect to ${url}`));
  });
}

/**
 * A percentile of samples (nearest rank).
 *
 * @param xs The samples.
 * @param p The percentile, 0-100.
 * @returns The value.
 */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

/**
 * Resolves after `ms`.
 *
 * @param ms Milliseconds.
 * @returns When elapsed.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A loopback port nothing listens on right now (bound, then closed).
 *
 * @returns The port.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The environment of a spawned MCP server: ours without Skytale settings, plus `extra`.
 *
 * @param extra Variables to set.
 * @returns The environment.
 */
export function serverEnv(extra: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("SKYTALE_")) out[k] = v;
  }
  return { ...out, ...extra };
}
