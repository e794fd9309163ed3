// Closed doors: what a relay process refuses before anyone has said hello — foreign Origin and
// Host headers (DNS rebinding, cross-origin WebSockets), oversize messages and silent connections —
// and mailbox takes that stay under the frame limit however much is queued.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import fsp from "node:fs/promises";
import net from "node:net";
import { connectWebSocket } from "../src/relay/client.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";
import {
  box,
  eventually,
  relayClient,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

/** One raw HTTP/1.1 request over TCP, so Host and Origin are exactly what the test says. */
function rawHttp(
  port: number,
  opts: { method?: string; path?: string; host: string; origin?: string; upgrade?: boolean },
): Promise<{ status: number; head: string }> {
  const lines = [
    `${opts.method ?? "GET"} ${opts.path ?? "/"} HTTP/1.1`,
    `Host: ${opts.host}`,
    ...(opts.origin !== undefined ? [`Origin: ${opts.origin}`] : []),
    ...(opts.upgrade
      ? [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
      ]
      : ["Connection: close"]),
    ...(opts.method === "POST" ? ["Content-Length: 0"] : []),
  ];
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`No answer from the relay; got ${JSON.stringify(got)}`));
    }, 5000);
    s.setEncoding("latin1");
    s.on("error", () => {});
    s.on("data", (d: string) => {
      got += d;
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      clearTimeout(timer);
      s.destroy();
      resolve({ status: Number(got.split(" ")[1]), head: got.slice(0, end) });
    });
    s.write(lines.join("\r\n") + "\r\n\r\n");
  });
}

test("a loopback relay refuses a foreign Origin (403) on the upgrade and on every HTTP endpoint, and a foreign Host", async () => {
  const { proc, port } = await startRelayProcess(["--store", "memory"]);
  try {
    const evil = "evil.attacker.example";
    const self = `127.0.0.1:${port}`;
    // What the issue saw: a DNS-rebound page's WebSocket got 101.
    assert.equal(
      (await rawHttp(port, { host: `${evil}:${port}`, origin: `http://${evil}`, upgrade: true }))
        .status,
      403,
    );
    // A foreign Origin alone (a cross-origin page talking to 127.0.0.1).
    for (const path of ["/", "/healthz", "/metrics"]) {
      const upgrade = path === "/";
      const r = await rawHttp(port, { host: self, origin: `http://${evil}`, path, upgrade });
      assert.equal(r.status, 403, `${path}: ${r.head}`);
    }
    assert.equal(
      (await rawHttp(port, { method: "POST", path: "/v1/tokens", host: self, origin: "null" }))
        .status,
      403,
    );
    // A foreign Host alone (DNS rebinding of a GET, which browsers send without Origin).
    for (const path of ["/", "/healthz", "/metrics"]) {
      const upgrade = path === "/";
      const r = await rawHttp(port, { host: `${evil}:${port}`, path, upgrade });
      assert.equal(r.status, 403, `${path}: ${r.head}`);
    }
    // Loopback names with the relay's port, without Origin (every non-browser client), pass.
    for (const host of [self, `localhost:${port}`, `[::1]:${port}`]) {
      assert.equal((await rawHttp(port, { host, upgrade: true })).status, 101, host);
      assert.equal((await rawHttp(port, { host, path: "/healthz" })).status, 200, host);
    }
    assert.equal((await rawHttp(port, { host: "127.0.0.1:1", path: "/healthz" })).status, 403);
    // The SDK's own client still connects and is served.
    const c = relayClient(`ws://${self}`);
    try {
      assert.ok((await c.ping()) >= 0);
    } finally {
      await c.close();
    }
    assert.match(proc.stderr(), /refused a request/);
  } finally {
    await proc.kill();
  }
});

test("--allow-origin and --allow-host let a chosen browser origin and proxy name in, and nothing else", async () => {
  const dir = await tempDir();
  const { proc, port } = await startRelayProcess([
    "--store",
    "memory",
    "--data-dir",
    dir,
    "--auth",
    "--allow-origin",
    "https://app.example",
    "--allow-origin",
    "http://localhost:3000",
    "--allow-host",
    "relay.example",
  ]);
  try {
    const self = `127.0.0.1:${port}`;
    const app = "https://app.example";
    assert.equal((await rawHttp(port, { host: self, origin: app, upgrade: true })).status, 101);
    assert.equal((await rawHttp(port, { host: self, origin: app, path: "/healthz" })).status, 200);
    assert.equal(
      (await rawHttp(port, { host: self, origin: "http://localhost:3000", upgrade: true })).status,
      101,
    );
    // The token endpoint is behind the same door: allowed origin → the endpoint answers (401, no key).
    assert.equal(
      (await rawHttp(port, { method: "POST", path: "/v1/tokens", host: self, origin: app }))
        .status,
      401,
    );
    assert.equal(
      (await rawHttp(port, {
        method: "POST",
        path: "/v1/tokens",
        host: self,
        origin: "https://evil.example",
      })).status,
      403,
    );
    assert.equal(
      (await rawHttp(port, { host: self, origin: "https://app.example:8443", upgrade: true }))
        .status,
      403,
    );
    assert.equal(
      (await rawHttp(port, { host: "relay.example", origin: app, upgrade: true })).status,
      101,
    );
    assert.equal(
      (await rawHttp(port, { host: "relay.example:443", path: "/healthz" })).status,
      200,
    );
    assert.equal((await rawHttp(port, { host: "other.example", path: "/healthz" })).status, 403);
  } finally {
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("skytale relay refuses a malformed --allow-origin or --allow-host", async () => {
  for (
    const args of [
      ["--allow-origin", "app.example"],
      ["--allow-origin", "https://app.example/path"],
      ["--allow-host", "http://relay.example"],
      ["--hello-timeout", "0"],
    ]
  ) {
    const p = spawnScript("mod.ts", ["relay", "--store", "memory", ...args]);
    assert.equal(await p.exited, 2, args.join(" "));
    assert.match(p.stderr(), /Usage: skytale relay/);
  }
});

/** The resident set of a process, in MiB, from /proc. */
function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
}

/**
 * Opens a WebSocket by hand and streams one binary message of `mib` MiB at the relay without ever
 * saying hello; resolves when the relay closed the connection or everything was written.
 */
function oversizeMessage(port: number, mib: number): Promise<"closed" | "sent"> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let done = false;
    const finish = (how: "closed" | "sent") => {
      if (done) return;
      done = true;
      s.destroy();
      resolve(how);
    };
    s.on("error", () => finish("closed"));
    s.on("close", () => finish("closed"));
    s.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    s.once("data", async () => {
      const header = new Uint8Array(14); // FIN + binary, masked, 64-bit length, zero mask key
      header[0] = 0x82;
      header[1] = 0x80 | 127;
      new DataView(header.buffer).setBigUint64(2, BigInt(mib * 1024 * 1024));
      s.write(header);
      const chunk = new Uint8Array(1024 * 1024);
      for (let i = 0; i < mib && !done; i++) {
        if (!s.write(chunk)) {
          await new Promise<void>((r) => {
            const t = setInterval(() => {
              if (done || s.writableLength === 0) {
                clearInterval(t);
                r();
              }
            }, 5);
          });
        }
      }
      // Give the relay time to read what was written before judging.
      setTimeout(() => finish("sent"), 1500);
    });
  });
}

test("three unauthenticated 60 MiB messages cost the relay under 50 MiB and are cut off", {
  skip: fs.existsSync("/proc/self/status") ? false : "needs /proc",
}, async () => {
  const { proc, port, url } = await startRelayProcess(["--store", "memory"]);
  try {
    // Warm up: one greeted connection, so what follows measures only the attack.
    const c = relayClient(url);
    await c.ping();
    await c.close();
    await new Promise((r) => setTimeout(r, 500));
    const pid = proc.child.pid!;
    const before = rssMiB(pid);
    const how = await Promise.all([1, 2, 3].map(() => oversizeMessage(port, 60)));
    await new Promise((r) => setTimeout(r, 500));
    const after = rssMiB(pid);
    assert.ok(
      after - before < 50,
      `relay RSS went from ${before.toFixed(1)} to ${after.toFixed(1)} MiB (${how})`,
    );
    assert.deepEqual(how, ["closed", "closed", "closed"]);
    // The relay still serves.
    const d = relayClient(url);
    try {
      assert.ok((await d.ping()) >= 0);
    } finally {
      await d.close();
    }
  } finally {
    await proc.kill();
  }
});

/** A raw client WebSocket that records frames and when it was closed. */
async function rawSocket(url: string) {
  const ws = await connectWebSocket(url, 5000);
  ws.binaryType = "arraybuffer";
  const frames: Frame[] = [];
  const sizes: number[] = [];
  let closedAt: number | undefined;
  ws.onmessage = (ev) => {
    const b = new Uint8Array(ev.data as ArrayBuffer);
    sizes.push(b.length);
    frames.push(decodeFrame(b, 128 * 1024 * 1024));
  };
  ws.onclose = () => (closedAt = Date.now());
  return {
    frames,
    sizes,
    closedAt: () => closedAt,
    send: (f: Frame | Uint8Array) =>
      ws.send((f instanceof Uint8Array ? f : encodeFrame(f)) as Uint8Array<ArrayBuffer>),
    close: () => ws.close(),
  };
}

test("a connection that never says hello is closed after the hello deadline, one that does stays", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory", "--hello-timeout", "1"]);
  try {
    const t0 = Date.now();
    const silent = await rawSocket(url);
    const greeted = await rawSocket(url);
    greeted.send({ type: "hello", reqId: 1 });
    await eventually(() => silent.closedAt() !== undefined, 5000, "the silent socket closed");
    const took = silent.closedAt()! - t0;
    assert.ok(took >= 900 && took < 4000, `closed after ${took} ms`);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(greeted.closedAt(), undefined);
    assert.equal(greeted.frames[0]?.type, "helloOk");
    greeted.close();
    assert.match(proc.stderr(), /no hello in time/);
  } finally {
    await proc.kill();
  }
});

test("before hello a connection gets a small budget: a 200 KiB frame closes it, after hello it is answered", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  try {
    const junk = new Uint8Array(200 * 1024);
    junk.set([1, 0x10, 0, 0, 0, 9]); // a ping header, then far too much
    const early = await rawSocket(url);
    early.send(junk);
    await eventually(() => early.closedAt() !== undefined, 5000, "the early socket closed");
    const late = await rawSocket(url);
    late.send({ type: "hello", reqId: 1 });
    await eventually(() => late.frames.length === 1, 5000, "helloOk");
    late.send(junk);
    await eventually(() => late.frames.length === 2, 5000, "an answer");
    assert.deepEqual(
      { type: late.frames[1]!.type, reqId: (late.frames[1] as { reqId: number }).reqId },
      { type: "error", reqId: 9 },
    );
    assert.equal(late.closedAt(), undefined);
    late.close();
  } finally {
    await proc.kill();
  }
});

test("a take of 40 items of 1 MiB comes back in pages under the frame limit, and the client collects all 40", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const c = relayClient(url);
  const raw = await rawSocket(url);
  try {
    const item = 1024 * 1024 - 1024;
    const a = box("page:a");
    const b = box("page:b");
    for (let i = 0; i < 40; i++) {
      const p = new Uint8Array(item);
      p[0] = i;
      await c.mailboxPut(a.address, p, 600);
      await c.mailboxPut(b.address, p, 600);
    }
    raw.send({ type: "hello", reqId: 1 });
    await eventually(() => raw.frames.length === 1, 5000, "helloOk");
    const limit = (raw.frames[0] as { maxFrameBytes: number }).maxFrameBytes;
    const got = new Set<number>();
    for (let reqId = 2; reqId < 100; reqId++) {
      const n = raw.frames.length;
      raw.send({ type: "mailboxTake", reqId, address: a.address, key: a.takeKey });
      await eventually(() => raw.frames.length > n, 20_000, `take ${reqId}`);
      const f = raw.frames[n]!;
      assert.equal(f.type, "mailboxItems", f.type === "error" ? f.message : f.type);
      assert.ok(raw.sizes[n]! <= limit, `a ${raw.sizes[n]}-byte frame, limit ${limit}`);
      if (f.type !== "mailboxItems" || f.items.length === 0) break;
      for (const i of f.items) got.add(i.payload[0]!);
    }
    assert.equal(got.size, 40);
    // The client's lease helper pages by itself and returns them all, oldest first.
    const leased = await c.mailboxLease(b.address, b.takeKey);
    assert.deepEqual(leased.map((i) => i.payload[0]), Array.from({ length: 40 }, (_, i) => i));
    await c.mailboxAck(b.address, leased.map((i) => i.id), b.takeKey);
    assert.deepEqual(await c.mailboxTake(b.address, b.takeKey), []);
  } finally {
    raw.close();
    await c.close();
    await proc.kill();
  }
});
