// A standalone binary: `deno compile` needs to download denort (not possible offline
// here), so the same entry point is compiled with `bun build --compile` and run for real.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { ROOT, tempDir } from "./_helpers.ts";

test("mod.ts compiles to a standalone binary that runs a relay and answers /healthz", async () => {
  const dir = await tempDir();
  const bin = path.join(dir, "skytale");
  const bun = path.join(ROOT, "node_modules", ".bin", "bun");
  const built = spawnSync(bun, ["build", "--compile", "--outfile", bin, "mod.ts"], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 180_000,
  });
  assert.equal(built.status, 0, built.stderr);
  const help = spawnSync(bin, ["help"], { encoding: "utf8", timeout: 30_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stderr, /Usage: skytale/);

  const relay = spawn(bin, ["relay", "--host", "127.0.0.1", "--port", "0", "--data-dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  try {
    let err = "";
    relay.stderr!.setEncoding("utf8");
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${err}`)), 30_000);
      relay.stderr!.on("data", (d: string) => {
        err += d;
        const m = err.match(/listening on ws:\/\/(127\.0\.0\.1:\d+)/);
        if (m) {
          clearTimeout(timer);
          resolve(`http://${m[1]}`);
        }
      });
      relay.on("exit", () => reject(new Error(`relay exited:\n${err}`)));
    });
    const res = await fetch(`${url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal((await res.text()).trim(), "ok");
  } finally {
    relay.kill("SIGKILL");
    await new Promise((r) => relay.once("exit", r));
  }
});
