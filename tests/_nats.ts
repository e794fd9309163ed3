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
async function _run(dir: string, port: number, cluster: string[] = [], ready = /Server is ready/) {
  const child = spawn(
    "bash",
    [path.join(ROOT, "scripts/nats.sh"), "start", dir, String(port), ...cluster],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let err = "";
  const exited = new Promise<void>((r) => child.on("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL"); // never leave a half-started server behind
      reject(new Error(`nats-server did not start:\n${err}`));
    }, 15_000);
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      if (ready.test(err)) {
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

/**
 * Starts a JetStream cluster of `n` nats-server nodes on loopback (scripts/nats.sh with routes);
 * resolves once the cluster has elected its metadata leader.
 */
export async function startNatsCluster(n = 3): Promise<{ nodes: NatsServer[]; urls: string }> {
  if (!HAVE_NATS) {
    throw new Error("nats-server is not installed: run scripts/nats.sh install (CI does)");
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const specs: { dir: string; port: number; cport: number }[] = [];
    for (let i = 0; i < n; i++) {
      specs.push({
        dir: await tempDir("skytale-natsc-"),
        port: await freePort(),
        cport: await freePort(),
      });
    }
    const routes = specs.map((s) => `nats://127.0.0.1:${s.cport}`).join(",");
    const start = (s: (typeof specs)[number], ready?: RegExp) =>
      _run(s.dir, s.port, [String(s.cport), routes], ready);
    // Every node must be up before any of them can elect a leader: start them all at once.
    const started = await Promise.allSettled(
      specs.map((s) =>
        start(
          s,
          /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/,
        )
      ),
    );
    const failed = started.find((r) => r.status === "rejected");
    if (failed) {
      // A port taken meanwhile, say: stop what started and try again on fresh ports.
      lastError = failed.reason;
      for (const r of started) if (r.status === "fulfilled") await r.value();
      for (const s of specs) await fsp.rm(s.dir, { recursive: true, force: true });
      continue;
    }
    const halts: ((() => Promise<void>) | undefined)[] = started.map((r) =>
      (r as PromiseFulfilledResult<() => Promise<void>>).value
    );
    const nodes = specs.map((s, i): NatsServer => {
      const pause = async () => {
        const h = halts[i];
        halts[i] = undefined;
        await h?.();
      };
      return {
        url: `nats://127.0.0.1:${s.port}`,
        pause,
        resume: async () => {
          halts[i] ??= await start(s);
        },
        stop: async () => {
          await pause();
          await fsp.rm(s.dir, { recursive: true, force: true });
        },
      };
    });
    return { nodes, urls: nodes.map((x) => x.url).join(",") };
  }
  throw lastError;
}
