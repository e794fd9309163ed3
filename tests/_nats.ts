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

/** Starts nats-server (loopback, JetStream, temp store) through scripts/nats.sh. */
export async function startNats(): Promise<{ url: string; stop: () => Promise<void> }> {
  if (!HAVE_NATS) {
    throw new Error("nats-server is not installed: run scripts/nats.sh install (CI does)");
  }
  const dir = await tempDir("skytale-nats-");
  const port = await freePort();
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
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
