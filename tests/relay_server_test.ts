import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { connectWebSocket, RelayClient, type RelayClientOptions } from "../src/relay/client.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import type { LogEntry } from "../src/relay/log/types.ts";
import { closeLocalRelays, localRelay } from "../src/relay/local.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";
import { startRelay } from "../src/relay/server.ts";
import {
  box,
  eventually,
  freePort,
  numbered,
  numOf,
  type Proc,
  rid,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

const CH = "acme/relay/test";

function client(url: string, extra: Partial<RelayClientOptions> = {}): RelayClient {
  return new RelayClient({
    connect: () => connectWebSocket(url, 2000),
    requestTimeoutMs: 20_000,
    backoffInitialMs: 50,
    backoffMaxMs: 500,
    ...extra,
  });
}

const opaque = (n: number) => numbered(n);

/**
 * Asserts a relay process shut down cleanly after SIGTERM. Deno's node:child_process reports
 * a child it signalled as killed by that signal even when the child handled it and exited 0,
 * so there the "stopped" line is the evidence.
 */
async function assertCleanExit(proc: Proc): Promise<void> {
  const code = await proc.exited;
  assert.match(proc.stderr(), /skytale relay: stopped/);
  if (!("Deno" in globalThis)) assert.equal(code, 0);
}

/** A raw WebSocket that records decoded frames, for protocol-level checks. */
async function rawSocket(url: string): Promise<{
  ws: WebSocket;
  frames: Frame[];
  send: (b: Uint8Array) => void;
  close: () => Promise<void>;
}> {
  const ws = await connectWebSocket(url, 5000);
  const frames: Frame[] = [];
  ws.onmessage = (ev) => frames.push(decodeFrame(new Uint8Array(ev.data as ArrayBuffer)));
  return {
    ws,
    frames,
    send: (b) => ws.send(b as Uint8Array<ArrayBuffer>),
    close: () =>
      new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        const t = setTimeout(resolve, 1000);
        ws.addEventListener("close", () => {
          clearTimeout(t);
          resolve();
        });
        ws.close();
      }),
  };
}

test("relay process answers /healthz and serves publish/subscribe in seq order", async () => {
  const dir = await tempDir();
  const { proc, url, port } = await startRelayProcess(["--data-dir", dir]);
  const a = client(url);
  const b = client(url);
  try {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "ok");
    assert.equal(await a.create(CH), true);
    assert.equal(await b.create(CH), false);
    const got: LogEntry[] = [];
    await b.subscribe(CH, { seq: 1 }, async (e) => {
      await new Promise((r) => setTimeout(r, 0)); // a slow-ish handler must still see order
      got.push(e);
    });
    const acks = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => a.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(i) }),
      ),
    );
    for (const r of acks) assert.equal(r.ok, true);
    // Acks are per publish and in send order.
    assert.deepEqual(acks.map((r) => r.ok && r.seq), Array.from({ length: 200 }, (_, i) => i + 1));
    await eventually(() => got.length >= 200, 20_000, "200 deliveries");
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.deepEqual(got.map((e) => numOf(e.payload)), Array.from({ length: 200 }, (_, i) => i));
    assert.ok(got.every((e) => e.kind === "application" && e.epoch === 0 && e.time > 0));
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("two clients committing at the same epoch at once: exactly one is acked", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const a = client(url);
  const b = client(url);
  try {
    await a.create(CH);
    for (let round = 0; round < 5; round++) {
      const [ra, rb] = await Promise.all([
        a.publish(CH, { id: rid(), kind: "commit", epoch: round, payload: opaque(1) }),
        b.publish(CH, { id: rid(), kind: "commit", epoch: round, payload: opaque(2) }),
      ]);
      const oks = [ra, rb].filter((r) => r.ok);
      const nacks = [ra, rb].filter((r) => !r.ok);
      assert.equal(oks.length, 1, `round ${round}: ${JSON.stringify([ra, rb])}`);
      assert.deepEqual(oks[0], { ok: true, seq: round + 1, epoch: round + 1 });
      assert.deepEqual(nacks[0], { ok: false, code: "stale_epoch", epoch: round + 1 });
    }
    const unknown = await a.publish("acme/relay/none", {
      id: rid(),
      kind: "commit",
      epoch: 0,
      payload: opaque(0),
    });
    assert.deepEqual(unknown, { ok: false, code: "unknown_channel", epoch: 0 });
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
  }
});

test("subscribe from a seq or from an epoch starts at the right entry; republish is idempotent", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const a = client(url);
  const b = client(url);
  try {
    await a.create(CH);
    await a.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(1) }); // 1
    await a.publish(CH, { id: rid(), kind: "commit", epoch: 0, payload: opaque(2) }); // 2 → epoch 1
    const id = rid();
    const first = await a.publish(CH, { id, kind: "application", epoch: 1, payload: opaque(3) }); // 3
    const again = await a.publish(CH, { id, kind: "application", epoch: 1, payload: opaque(3) });
    assert.deepEqual(again, first);
    await a.publish(CH, { id: rid(), kind: "proposal", epoch: 1, payload: opaque(4) }); // 4

    const fromEpoch: number[] = [];
    await b.subscribe(CH, { epoch: 1 }, (e) => void fromEpoch.push(e.seq));
    const fromSeq: number[] = [];
    await a.subscribe(CH, { seq: 2 }, (e) => void fromSeq.push(e.seq));
    await eventually(() => fromEpoch.length === 2 && fromSeq.length === 3, 3_000, "catch-up").catch(
      (e) => {
        throw new Error(`${e.message}: ${JSON.stringify({ fromEpoch, fromSeq })}`);
      },
    );
    assert.deepEqual(fromEpoch, [3, 4]);
    assert.deepEqual(fromSeq, [2, 3, 4]);
    // Live entries follow the catch-up with no gap and no repeat.
    await a.publish(CH, { id: rid(), kind: "application", epoch: 1, payload: opaque(5) });
    await a.publish(CH, { id, kind: "application", epoch: 1, payload: opaque(3) }); // again: no delivery
    await eventually(() => fromEpoch.length === 3 && fromSeq.length === 4, 10_000, "live");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(fromEpoch, [3, 4, 5]);
    assert.deepEqual(fromSeq, [2, 3, 4, 5]);
    // Unsubscribe stops deliveries.
    await b.unsubscribe(CH);
    await a.publish(CH, { id: rid(), kind: "application", epoch: 1, payload: opaque(6) });
    await eventually(() => fromSeq.length === 5, 10_000, "after unsubscribe");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(fromEpoch, [3, 4, 5]);
    await assert.rejects(
      b.subscribe("acme/relay/missing", { seq: 1 }, () => {}),
      { code: "unknown_channel" },
    );
    await assert.rejects(b.create("not-a-channel"), { code: "invalid_channel" });
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
  }
});

test("mailbox put/take hands each blob over once, oldest first", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const a = client(url);
  const b = client(url);
  try {
    await a.mailboxPut(box("welcome:bob").address, opaque(1), 60);
    await a.mailboxPut(box("welcome:bob").address, opaque(2), 60);
    await a.mailboxPut(box("welcome:carol").address, opaque(3), 60);
    assert.deepEqual(
      (await b.mailboxTake(box("welcome:bob").address, box("welcome:bob").takeKey)).map(numOf),
      [1, 2],
    );
    assert.deepEqual(
      await b.mailboxTake(box("welcome:bob").address, box("welcome:bob").takeKey),
      [],
    );
    assert.deepEqual(
      (await b.mailboxTake(box("welcome:carol").address, box("welcome:carol").takeKey)).map(numOf),
      [3],
    );
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
  }
});

test("a relay killed mid-stream and restarted on the same data dir loses and repeats nothing", async () => {
  const dir = await tempDir();
  const port = await freePort();
  const args = ["--data-dir", dir, "--port", String(port)];
  let relay = await startRelayProcess(args);
  const pub = client(relay.url);
  const sub = client(relay.url);
  const TOTAL = 300;
  try {
    await pub.create(CH);
    const got: LogEntry[] = [];
    await sub.subscribe(CH, { seq: 1 }, (e) => void got.push(e));
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < TOTAL; i++) {
      // Pipelined: many publishes are in flight when the relay dies.
      acks.push(pub.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(i) }));
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
      if (i === 120) {
        relay.proc.child.kill("SIGKILL");
        await relay.proc.exited;
        relay = await startRelayProcess(args);
      }
    }
    const results = await Promise.all(acks);
    assert.ok(results.every((r) => (r as { ok: boolean }).ok));
    const seqs = results.map((r) => (r as { seq: number }).seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: TOTAL }, (_, i) => i + 1));
    await eventually(() => got.length >= TOTAL, 30_000, `${TOTAL} deliveries (have ${got.length})`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: TOTAL }, (_, i) => i + 1));
    assert.deepEqual(new Set(got.map((e) => numOf(e.payload))).size, TOTAL);
  } finally {
    await pub.close();
    await sub.close();
    await relay.proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("garbage frames get an error frame and the relay keeps serving others", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory", "--max-frame-bytes", "4096"]);
  const good = client(url);
  const raw = await rawSocket(url);
  try {
    await good.create(CH);
    raw.send(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    raw.send(new Uint8Array([1, 0x09, 0, 0, 0, 7, 0, 99])); // truncated publish, request id 7
    raw.send(encodeFrame({ type: "create", reqId: 8, channel: CH })); // before hello
    raw.send(new Uint8Array(5000).fill(1)); // over --max-frame-bytes
    await eventually(() => raw.frames.length >= 4, 10_000, "four error frames");
    const errs = raw.frames.map((f) => f.type === "error" ? [f.reqId, f.code] : [f.type]);
    // The oversized frame starts 0x01 0x01 (a "hello"), so its request id is read as 0x01010101.
    assert.deepEqual(errs, [[0, "protocol"], [7, "protocol"], [8, "protocol"], [
      0x01010101,
      "too_large",
    ]]);
    // The same socket still works once it says hello.
    raw.send(encodeFrame({ type: "hello", reqId: 9 }));
    raw.send(encodeFrame({ type: "ping", reqId: 10 }));
    await eventually(() => raw.frames.length >= 6, 10_000, "hello-ok and pong");
    assert.deepEqual(raw.frames.slice(4).map((f) => f.type), ["helloOk", "pong"]);
    const r = await good.publish(CH, {
      id: rid(),
      kind: "application",
      epoch: 0,
      payload: opaque(1),
    });
    assert.deepEqual(r, { ok: true, seq: 1, epoch: 0 });
    await assert.rejects(
      good.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: new Uint8Array(5000) }),
      { code: "too_large" },
    );
  } finally {
    await raw.close();
    await good.close();
    await proc.kill();
  }
});

test("the SQLite log and the relay's output hold no marker the clients sent outside payloads", async () => {
  const dir = await tempDir();
  const marker = "PLAINTEXT-MARKER-" + crypto.randomUUID();
  const { proc, url } = await startRelayProcess(["--data-dir", dir]);
  const a = client(url, { token: () => Promise.resolve(marker) });
  try {
    await a.create(CH);
    for (let i = 0; i < 20; i++) {
      await a.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(i) });
    }
    await a.mailboxPut(box("kp:x").address, opaque(99), 60);
    await a.close();
    await proc.kill("SIGTERM");
    await assertCleanExit(proc);
    const files = await fsp.readdir(dir);
    assert.ok(files.includes("relay.db"), `files: ${files}`);
    for (const f of files) {
      const text = new TextDecoder("latin1").decode(await fsp.readFile(path.join(dir, f)));
      assert.ok(!text.includes(marker), `${f} contains the marker`);
    }
    assert.ok(!proc.stderr().includes(marker));
    assert.ok(!proc.stdout().includes(marker));
  } finally {
    await a.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("relay limits answer with error frames: channels per connection and publish rate", async () => {
  const relay = await startRelay({
    hostname: "127.0.0.1",
    port: 0,
    log: new MemoryLog(),
    limits: { maxChannelsPerConnection: 2, publishPerSecond: 1, publishBurst: 3 },
  });
  const a = client(relay.url);
  try {
    for (const c of ["a/b/one", "a/b/two", "a/b/three"]) await a.create(c);
    await a.subscribe("a/b/one", { seq: 1 }, () => {});
    await a.subscribe("a/b/two", { seq: 1 }, () => {});
    await assert.rejects(a.subscribe("a/b/three", { seq: 1 }, () => {}), { code: "limit" });
    const results = await Promise.allSettled(
      Array.from(
        { length: 5 },
        () =>
          a.publish("a/b/one", { id: rid(), kind: "application", epoch: 0, payload: opaque(0) }),
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    const rejected = results.filter((r) => r.status === "rejected");
    assert.equal(rejected.length, 2);
    assert.equal((rejected[0] as PromiseRejectedResult).reason.code, "limit");
    const metrics = await (await fetch(`http://127.0.0.1:${relay.port}/metrics`)).text();
    assert.match(metrics, /skytale_relay_published_total 3/);
    assert.match(metrics, /skytale_relay_subscriptions 2/);
  } finally {
    await a.close();
    await relay.close();
  }
});

test("a client that cannot reach any relay fails with relay_unavailable; close() is idempotent", async () => {
  const port = await freePort();
  const c = client(`ws://127.0.0.1:${port}`, { requestTimeoutMs: 600 });
  await assert.rejects(c.create(CH), { code: "relay_unavailable" });
  await c.close();
  await c.close();
  await assert.rejects(c.create(CH), { code: "closed" });
});

test("skytale relay refuses unknown options and exits 0 on SIGTERM", async () => {
  const bad = spawnScript("mod.ts", ["relay", "--bogus"]);
  assert.equal(await bad.exited, 2);
  assert.match(bad.stderr(), /bogus/);
  const { proc } = await startRelayProcess(["--store", "memory"]);
  await proc.kill("SIGTERM");
  await assertCleanExit(proc);
});

test("localRelay() hosts the relay when none runs and a survivor takes over the log", async () => {
  const dir = await tempDir();
  const port = await freePort();
  // Another process hosts first, on the same SKYTALE_HOME.
  const other = await startRelayProcess(["--local", "--port", String(port)], {
    SKYTALE_HOME: dir,
  });
  const c = new RelayClient({
    ...localRelay({ port, home: dir }),
    requestTimeoutMs: 20_000,
    backoffInitialMs: 50,
    backoffMaxMs: 300,
  });
  const got: number[] = [];
  try {
    await c.create(CH);
    await c.subscribe(CH, { seq: 1 }, (e) => void got.push(e.seq));
    await c.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(1) });
    other.proc.child.kill("SIGKILL");
    await other.proc.exited;
    // This process now hosts the relay over the same SQLite file.
    const r = await c.publish(CH, { id: rid(), kind: "application", epoch: 0, payload: opaque(2) });
    assert.deepEqual(r, { ok: true, seq: 2, epoch: 0 });
    await eventually(() => got.length === 2, 20_000, "two deliveries");
    assert.deepEqual(got, [1, 2]);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(await health.text(), "ok");
    // A second connector in the same process finds the hosted relay.
    const d = new RelayClient(localRelay({ port, home: dir }));
    assert.equal(await d.create(CH), false);
    await d.close();
  } finally {
    await c.close();
    await closeLocalRelays();
    await other.proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("localRelay() stops the relay it hosts when its last user in the process releases it", async () => {
  const dir = await tempDir();
  const port = await freePort();
  const a = localRelay({ port, home: dir });
  const b = localRelay({ port, home: dir });
  const ca = new RelayClient({ connect: a.connect, greet: a.greet, requestTimeoutMs: 20_000 });
  try {
    assert.equal(await ca.create(CH), true); // hosts it
    await ca.close();
    await a.release();
    await a.release(); // idempotent: b still counts
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text(), "ok");
    await b.release();
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
  } finally {
    await closeLocalRelays();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("the hello token is checked and an org-scoped connection may only use its org's channels", async () => {
  const relay = await startRelay({
    hostname: "127.0.0.1",
    port: 0,
    log: new MemoryLog(),
    authenticate: (token) => {
      if (token !== "good") return Promise.reject(new Error("bad token"));
      return Promise.resolve({ org: "acme" });
    },
  });
  const bad = client(relay.url, { token: () => Promise.resolve("nope") });
  const good = client(relay.url, { token: () => Promise.resolve("good") });
  try {
    await assert.rejects(bad.create("acme/x/y"), { code: "auth" });
    assert.equal(await good.create("acme/x/y"), true);
    await assert.rejects(good.create("other/x/y"), { code: "auth" });
  } finally {
    await bad.close();
    await good.close();
    await relay.close();
  }
});
