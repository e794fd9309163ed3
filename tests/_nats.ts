// NATS JetStream for the scale-out tests: Debian's `nats-server` (`scripts/nats.sh install`).
// In CI a missing server fails these tests instead of skipping them.
import { spawn, spawnSync } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { freePort, ROOT, tempDir } from "./_helpers.ts";

export const HAVE_NATS = spawnSync("nats-server", ["--version"]).status === 0;
const CI = process.env.CI === "true" || process.env.CI === "1";
// Never skip silently in CI: there the tests run and fail without a server.
export const SKIP = !HAVE_NATS && !CI
  ? "nats-server is not installed (scripts/nats.sh install); CI runs these tests"
  : false;

/** A nats-server for a test. */
export interface NatsServer {
  url: string;
  /** Stops the server for good and removes its store. */
  stop: () => Promise<void>;
  /** Stops the server, keeping its port and store for {@linkcode NatsServer.resume}. */
  pause: () => Promise<void>;
  /** Starts it again on the same port and store. */
  resume: () => Promise<void>;
}

/** Runs nats-server through scripts/nats.sh; resolves once it is ready. */
async function _run(dir: string, port: number) {
  const child = spawn("bash", [path.join(ROOT, "scripts/nats.sh"), "start", dir, String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not start:\n${err}`)), 15_000);
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (/Server is ready/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited:\n${err}`));
    });
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
}

/** Starts nats-server (loopback, JetStream, temp store) through scripts/nats.sh. */
export async function startNats(): Promise<NatsServer> {
  if (!HAVE_NATS) {
    throw new Error("nats-server is not installed: run scripts/nats.sh install (CI does)");
  }
  const dir = await tempDir("skytale-nats-");
  const port = await freePort();
  let halt: (() => Promise<void>) | undefined = await _run(dir, port);
  const pause = async () => {
    const h = halt;
    halt = undefined;
    await h?.();
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    pause,
    resume: async () => {
      halt ??= await _run(dir, port);
    },
    stop: async () => {
      await pause();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
