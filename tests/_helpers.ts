// Shared test helpers: spawning our own entry points as real processes under the
// runtime that runs the test, temp dirs, and bounded waits.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { connectWebSocket, RelayClient, type RelayClientOptions } from "../src/relay/client.ts";

/** The project root. */
export const ROOT = path.resolve(import.meta.dirname ?? ".", "..");

/** The command (and leading args) that runs a `.ts` file under the current runtime. */
export function runtimeCommand(): [string, string[]] {
  if ("Deno" in globalThis) return [process.execPath, ["run", "-A", "--quiet"]];
  return [process.execPath, []];
}

/** Random opaque bytes (24 by default) that carry the number `n` in their first four. */
export function numbered(n: number, bytes = 24): Uint8Array {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** The number {@linkcode numbered} put into `p`. */
export function numOf(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}

/** A fresh temp directory, removed by the returned cleanup. */
export async function tempDir(prefix = "skytale-test-"): Promise<string> {
  return await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A spawned process with its stderr collected. */
export interface Proc {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  /** Resolves with the first stderr match of `re`, or rejects after `ms`. */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>;
  /** Sends a signal and waits for exit (bounded). */
  kill: (signal?: NodeJS.Signals) => Promise<void>;
  exited: Promise<number | null>;
}

/** Processes spawned by {@linkcode spawnScript} that have not exited yet. */
const LIVE = new Set<Proc>();

/**
 * Runs `fn`, then SIGKILLs every process spawned while it ran that is still
 * alive, whether `fn` succeeded or failed, so a failing scenario never leaves
 * relays or agents behind (which would keep a test runner from ending).
 */
export async function reaping<T>(fn: () => Promise<T>): Promise<T> {
  const before = new Set(LIVE);
  try {
    return await fn();
  } finally {
    await Promise.all([...LIVE].filter((p) => !before.has(p)).map((p) => p.kill("SIGKILL")));
  }
}

/** Spawns `script` (relative to ROOT) under the current runtime. */
export function spawnScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Proc {
  const [cmd, pre] = runtimeCommand();
  const child = spawn(cmd, [...pre, path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stderr!.setEncoding("utf8");
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => (out += d));
  child.stderr!.on("data", (d: string) => {
    err += d;
    if (process.env.SKYTALE_TEST_VERBOSE) process.stderr.write(d);
    for (const w of [...waiters]) {
      const m = err.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const proc: Proc = {
    child,
    stderr: () => err,
    stdout: () => out,
    exited,
    waitFor(re, ms = 30_000) {
      const m = err.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`Timed out after ${ms} ms waiting for ${re} in stderr:\n${err}`));
        }, ms);
        waiters.push({
          re,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
        exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`Process exited while waiting for ${re}; stderr:\n${err}`));
        });
      });
    },
    async kill(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // process.kill, not child.kill: under Deno, child.kill sends nothing after a first signal.
      signalPid(child, signal);
      const t = setTimeout(() => signalPid(child, "SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
  LIVE.add(proc);
  void exited.then(() => LIVE.delete(proc));
  return proc;
}

/** Sends a signal to a child by pid, ignoring a child that is already gone. */
export function signalPid(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(child.pid, signal);
  } catch {
    // already exited
  }
}

/** Starts `mod.ts relay` on an ephemeral loopback port; resolves with its URL. */
export async function startRelayProcess(
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ proc: Proc; url: string; port: number }> {
  const hasPort = args.includes("--port");
  const proc = spawnScript("mod.ts", [
    "relay",
    "--host",
    "127.0.0.1",
    ...(hasPort ? [] : ["--port", "0"]),
    ...args,
  ], env);
  const m = await proc.waitFor(/listening on (ws:\/\/127\.0\.0\.1:(\d+))/);
  return { proc, url: m[1]!, port: Number(m[2]) };
}

/** Polls `check` every 20 ms until it returns true, failing after `ms`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 20_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
}

/** A free TCP port on 127.0.0.1 (free when asked; a test binds it soon after). */
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

/** The pinned Node 26 from node_modules, for tools that must run under Node. */
export function nodeBin(): string {
  const pinned = path.join(ROOT, "node_modules/.bin/node");
  return fs.existsSync(pinned) ? pinned : "node";
}

/** A RelayClient for tests: short connect timeout and backoff, errors swallowed. */
export function relayClient(url: string, extra: Partial<RelayClientOptions> = {}): RelayClient {
  return new RelayClient({
    connect: () => connectWebSocket(url, 2000),
    requestTimeoutMs: 10_000,
    backoffInitialMs: 50,
    backoffMaxMs: 300,
    onError: () => {},
    ...extra,
  });
}

/** A fresh random 16-byte publish id. */
export const rid = (): Uint8Array => crypto.getRandomValues(new Uint8Array(16));

/**
 * A mailbox for tests: its take key is derived from `name` (the same name, the same mailbox)
 * and its address is `name:` + hex SHA-256 of that key, as the relay requires.
 */
export function box(name: string): { address: string; takeKey: Uint8Array } {
  const takeKey = new Uint8Array(createHash("sha256").update(`test mailbox ${name}`).digest());
  return { address: `${name}:${createHash("sha256").update(takeKey).digest("hex")}`, takeKey };
}
