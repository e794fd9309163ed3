// Scale-out: relays sharing one channel space on NATS JetStream. Needs `nats-server`
// (Debian package; `scripts/nats.sh install`). In CI a missing server fails these tests.
import process from "node:process";
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  connectWebSocket,
  failoverConnector,
  RelayClient,
  type RelayClientOptions,
} from "../src/relay/client.ts";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { NatsAuthStore } from "../src/relay/auth_nats.ts";
import { NatsLog } from "../src/relay/log/nats.ts";
import type { LogEntry } from "../src/relay/log/types.ts";
import fsp from "node:fs/promises";
import {
  box,
  eventually,
  numbered,
  numOf,
  relayClient,
  rid,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";
import { SKIP, startNats, startNatsCluster } from "./_nats.ts";

const opaque = (n: number) => numbered(n, 16);

function client(
  connect: () => Promise<WebSocket>,
  extra: Partial<RelayClientOptions> = {},
): RelayClient {
  return new RelayClient({
    connect,
    requestTimeoutMs: 30_000,
    backoffInitialMs: 50,
    backoffMaxMs: 300,
    onError: () => {},
    ...extra,
  });
}
const at = (url: string) => client(() => connectWebSocket(url, 2000));

test(
  "clients on two relays over one NATS share a channel and see one order",
  { skip: SKIP },
  async () => {
    const nats = await startNats();
    const r1 = await startRelayProcess(["--store", nats.url]);
    const r2 = await startRelayProcess(["--store", nats.url]);
    const a = at(r1.url);
    const b = at(r2.url);
    try {
      assert.equal(await a.create("acme/nats/shared"), true);
      assert.equal(await b.create("acme/nats/shared"), false);
      const gotA: LogEntry[] = [];
      const gotB: LogEntry[] = [];
      await a.subscribe("acme/nats/shared", { seq: 1 }, (e) => void gotA.push(e));
      await b.subscribe("acme/nats/shared", { seq: 1 }, (e) => void gotB.push(e));
      const acks = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? a : b).publish("acme/nats/shared", {
            id: rid(),
            kind: "application",
            epoch: 0,
            payload: opaque(i),
          })),
      );
      const seqs = acks.map((r) => (r.ok ? r.seq : 0)).sort((x, y) => x - y);
      assert.deepEqual(seqs, Array.from({ length: 40 }, (_, i) => i + 1));
      await eventually(() => gotA.length === 40 && gotB.length === 40, 20_000, "deliveries");
      assert.deepEqual(gotA.map((e) => e.seq), seqs);
      assert.deepEqual(gotB.map((e) => e.seq), seqs);
      assert.deepEqual(gotA.map((e) => numOf(e.payload)), gotB.map((e) => numOf(e.payload)));
      // Mailboxes are shared too.
      await a.mailboxPut(box("kp:bob").address, opaque(7), 60);
      assert.deepEqual(
        (await b.mailboxTake(box("kp:bob").address, box("kp:bob").takeKey)).map(numOf),
        [7],
      );
      assert.deepEqual(await a.mailboxTake(box("kp:bob").address, box("kp:bob").takeKey), []);
    } finally {
      await a.close();
      await b.close();
      await r1.proc.kill();
      await r2.proc.kill();
      await nats.stop();
    }
  },
);

test("concurrent commits through two relays: exactly one per epoch", { skip: SKIP }, async () => {
  const nats = await startNats();
  const r1 = await startRelayProcess(["--store", nats.url]);
  const r2 = await startRelayProcess(["--store", nats.url]);
  const a = at(r1.url);
  const b = at(r2.url);
  try {
    await a.create("acme/nats/commits");
    let seq = 0;
    for (let epoch = 0; epoch < 15; epoch++) {
      // An application entry now and then, so commits race over a moving head.
      if (epoch % 3 === 0) {
        await b.publish("acme/nats/commits", {
          id: rid(),
          kind: "application",
          epoch,
          payload: opaque(0),
        });
        seq++;
      }
      const rs = await Promise.all(
        [a, b, a, b].map((c, i) =>
          c.publish("acme/nats/commits", { id: rid(), kind: "commit", epoch, payload: opaque(i) })
        ),
      );
      const oks = rs.filter((r) => r.ok);
      assert.equal(oks.length, 1, `epoch ${epoch}: ${JSON.stringify(rs)}`);
      seq++;
      assert.deepEqual(oks[0], { ok: true, seq, epoch: epoch + 1 });
      for (const r of rs.filter((r) => !r.ok)) {
        assert.deepEqual(r, { ok: false, code: "stale_epoch", epoch: epoch + 1 });
      }
    }
    const fromEpoch: number[] = [];
    await b.subscribe("acme/nats/commits", { epoch: 15 }, (e) => void fromEpoch.push(e.seq));
    await a.publish("acme/nats/commits", {
      id: rid(),
      kind: "application",
      epoch: 15,
      payload: opaque(1),
    });
    await eventually(() => fromEpoch.length === 1, 10_000, "epoch 15 entry");
    assert.deepEqual(fromEpoch, [seq + 1]);
  } finally {
    await a.close();
    await b.close();
    await r1.proc.kill();
    await r2.proc.kill();
    await nats.stop();
  }
});

test("killing a relay moves its clients to the other with nothing lost or duplicated", {
  skip: SKIP,
}, async () => {
  const nats = await startNats();
  const r1 = await startRelayProcess(["--store", nats.url]);
  const r2 = await startRelayProcess(["--store", nats.url]);
  const urls = [r1.url, r2.url];
  const pub = client(failoverConnector(urls, 2000));
  const sub = client(failoverConnector(urls, 2000));
  const TOTAL = 300;
  try {
    await pub.create("acme/nats/failover");
    const got: LogEntry[] = [];
    await sub.subscribe("acme/nats/failover", { seq: 1 }, (e) => void got.push(e));
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < TOTAL; i++) {
      acks.push(
        pub.publish("acme/nats/failover", {
          id: rid(),
          kind: "application",
          epoch: 0,
          payload: opaque(i),
        }),
      );
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 5));
      if (i === 120) r1.proc.child.kill("SIGKILL"); // both clients are on r1
    }
    const results = await Promise.all(acks) as { ok: boolean; seq: number }[];
    assert.ok(results.every((r) => r.ok));
    assert.deepEqual(
      results.map((r) => r.seq).sort((x, y) => x - y),
      Array.from({ length: TOTAL }, (_, i) => i + 1),
    );
    await eventually(() => got.length >= TOTAL, 30_000, `${TOTAL} deliveries (${got.length})`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: TOTAL }, (_, i) => i + 1));
    assert.equal(new Set(got.map((e) => numOf(e.payload))).size, TOTAL);
    assert.ok(r1.proc.child.signalCode === "SIGKILL" || r1.proc.child.exitCode !== null);
  } finally {
    await pub.close();
    await sub.close();
    await r1.proc.kill();
    await r2.proc.kill();
    await nats.stop();
  }
});

test(
  "a publish id stays idempotent after JetStream's de-duplication window",
  { skip: SKIP },
  async () => {
    const nats = await startNats();
    const log = await NatsLog.open(nats.url, { duplicateWindowMs: 1000, prefix: "dedupe" });
    try {
      await log.create("acme/nats/dedupe");
      const id = rid();
      const e = {
        id,
        kind: "application" as const,
        epoch: 0,
        payload: opaque(1),
        time: Date.now(),
      };
      assert.deepEqual(await log.append("acme/nats/dedupe", e), { ok: true, seq: 1, epoch: 0 });
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(await log.append("acme/nats/dedupe", e), { ok: true, seq: 1, epoch: 0 });
      assert.deepEqual(await log.info("acme/nats/dedupe"), { epoch: 0, head: 1 });
      const c = { ...e, id: rid(), kind: "commit" as const };
      assert.deepEqual(await log.append("acme/nats/dedupe", c), { ok: true, seq: 2, epoch: 1 });
      assert.deepEqual(await log.append("acme/nats/dedupe", c), { ok: true, seq: 2, epoch: 1 });
      assert.equal(await log.firstSeqOfEpoch("acme/nats/dedupe", 1), 3);
      assert.deepEqual(
        (await log.read("acme/nats/dedupe", 1, 10)).map((x) => [x.seq, x.kind]),
        [[1, "application"], [2, "commit"]],
      );
      assert.equal(await log.info("acme/nats/none"), undefined);
      assert.deepEqual(await log.append("acme/nats/none", e), {
        ok: false,
        code: "unknown_channel",
        epoch: 0,
      });
    } finally {
      await log.close();
      await nats.stop();
    }
  },
);

test(
  "watchers see only entries JetStream stored, never a publish the CAS refused",
  { skip: SKIP },
  async () => {
    // A core NATS subscription on a stream's subject also receives publishes that JetStream
    // refused (wrong last sequence) or de-duplicated. A relay that fanned those out handed its
    // subscribers a payload at a seq where the log holds another one: one entry seen twice,
    // another never (seen once in the failover test under Bun).
    const nats = await startNats();
    const a = await NatsLog.open(nats.url, { prefix: "cas" });
    const b = await NatsLog.open(nats.url, { prefix: "cas" });
    const w = await NatsLog.open(nats.url, { prefix: "cas" });
    const ch = "acme/nats/cas";
    const entry = (kind: "application" | "commit", epoch: number, n: number) => ({
      id: rid(),
      kind,
      epoch,
      payload: opaque(n),
      time: Date.now(),
    });
    const seen: LogEntry[] = [];
    let stop = () => {};
    try {
      await assert.rejects(w.watch(ch, () => {}), { code: "unknown_channel" });
      await a.create(ch);
      assert.deepEqual(await a.info(ch), { epoch: 0, head: 0 }); // a caches head 0, epoch 0
      stop = await w.watch(ch, (e) => void seen.push(e));
      assert.deepEqual(await b.append(ch, entry("commit", 0, 1)), { ok: true, seq: 1, epoch: 1 });
      // a's first attempt names seq 1 and is refused by the CAS; its retry lands at seq 2.
      assert.deepEqual(await a.append(ch, entry("application", 0, 2)), {
        ok: true,
        seq: 2,
        epoch: 0,
      });
      // A commit for an epoch a still believes in: refused, then stale_epoch.
      const c = await b.append(ch, entry("commit", 1, 3));
      assert.deepEqual(c, { ok: true, seq: 3, epoch: 2 });
      assert.deepEqual(await a.append(ch, entry("commit", 1, 4)), {
        ok: false,
        code: "stale_epoch",
        epoch: 2,
      });
      // A retried publish id (de-duplicated by JetStream) is not a new entry either.
      const dup = entry("application", 2, 5);
      assert.deepEqual(await b.append(ch, dup), { ok: true, seq: 4, epoch: 2 });
      assert.deepEqual(await a.append(ch, dup), { ok: true, seq: 4, epoch: 2 });
      const stored = await w.read(ch, 1, 10);
      assert.deepEqual(stored.map((e) => numOf(e.payload)), [1, 2, 3, 5]);
      await eventually(() => seen.length >= 4, 10_000, "4 watched entries");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        seen.map((e) => [e.seq, numOf(e.payload)]),
        stored.map((e) => [e.seq, numOf(e.payload)]),
      );
      // The watcher's cached head and epoch follow only stored entries.
      assert.deepEqual(await w.info(ch), { epoch: 2, head: 4 });
      assert.equal(await w.firstSeqOfEpoch(ch, 2), 4);
    } finally {
      stop();
      await a.close();
      await b.close();
      await w.close();
      await nats.stop();
    }
  },
);

test("two relays taking one mailbox at once never both get an item", { skip: SKIP }, async () => {
  const nats = await startNats();
  const logs = await Promise.all([1, 2, 3].map(() => NatsLog.open(nats.url, { prefix: "mbx" })));
  try {
    const N = 60;
    const got: number[] = [];
    const exp = Date.now() + 60_000;
    for (let i = 0; i < N; i++) {
      await logs[i % 3]!.mailboxPut("kp:carol", rid(), opaque(i), exp);
      if (i % 4 === 3) {
        // Every log takes at once, several times over, while items keep arriving.
        const takes = await Promise.all(
          logs.flatMap((
            l,
          ) => [l.mailboxTake("kp:carol", Date.now()), l.mailboxTake("kp:carol", Date.now())]),
        );
        for (const t of takes) got.push(...t.map((x) => numOf(x.payload)));
      }
    }
    for (const l of logs) {
      got.push(...(await l.mailboxTake("kp:carol", Date.now())).map((x) => numOf(x.payload)));
    }
    assert.deepEqual(got.sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i));
  } finally {
    for (const l of logs) await l.close();
    await nats.stop();
  }
});

test("relays starting and creating one channel at once: one creation, no errors", {
  skip: SKIP,
}, async () => {
  const nats = await startNats();
  const logs = await Promise.all(
    [1, 2, 3, 4].map(() => NatsLog.open(nats.url, { prefix: "race" })),
  );
  try {
    const created = await Promise.all(logs.map((l) => l.create("acme/nats/race")));
    assert.deepEqual(created.filter((x) => x).length, 1, String(created));
    for (const l of logs) assert.deepEqual(await l.info("acme/nats/race"), { epoch: 0, head: 0 });
  } finally {
    for (const l of logs) await l.close();
    await nats.stop();
  }
});

test("NATS retention leaves gaps that reads, epoch lookups, retries and a fresh relay get right", {
  skip: SKIP,
}, async () => {
  const nats = await startNats();
  const opts = { prefix: "ret", retention: { maxCount: 10, maxAgeMs: 1000 } };
  const a = await NatsLog.open(nats.url, opts);
  const ch = "acme/nats/ret";
  const entry = (kind: "application" | "commit", epoch: number, n: number) => ({
    id: rid(),
    kind,
    epoch,
    payload: opaque(n),
    time: Date.now(),
  });
  try {
    await a.create(ch);
    // 1-100 at epoch 0, a commit at 101, then 102-300 at epoch 1: count keeps 291-300.
    const first = entry("application", 0, 1);
    assert.deepEqual(await a.append(ch, first), { ok: true, seq: 1, epoch: 0 });
    for (let i = 2; i <= 100; i++) await a.append(ch, entry("application", 0, i));
    assert.deepEqual(await a.append(ch, entry("commit", 0, 101)), { ok: true, seq: 101, epoch: 1 });
    for (let i = 102; i <= 300; i++) await a.append(ch, entry("application", 1, i));
    // A read from 1 jumps the trimmed gap (longer than one batch) instead of coming back empty.
    assert.deepEqual((await a.read(ch, 1, 64)).map((e) => e.seq), [101]);
    assert.deepEqual(
      (await a.read(ch, 102, 64)).map((e) => e.seq),
      Array.from({ length: 10 }, (_, i) => 291 + i),
    );
    assert.deepEqual((await a.read(ch, 102, 5)).map((e) => e.seq), [291, 292, 293, 294, 295]);
    assert.equal(await a.firstSeqOfEpoch(ch, 1), 102);
    // A retry of a trimmed entry is still answered, not stored again.
    assert.deepEqual(await a.append(ch, first), { ok: true, seq: 1, epoch: 0 });
    // Age: after a second everything but the commit goes, the newest entry included.
    await new Promise((r) => setTimeout(r, 1200));
    const deleted = await a.trim(Date.now());
    assert.equal(deleted, 10);
    assert.deepEqual((await a.read(ch, 1, 64)).map((e) => e.seq), [101]);
    // A relay that never saw this channel still finds its head and epoch.
    const b = await NatsLog.open(nats.url, opts);
    try {
      assert.deepEqual(await b.info(ch), { epoch: 1, head: 300 });
      assert.equal(await b.firstSeqOfEpoch(ch, 1), 102);
      assert.deepEqual(await b.append(ch, entry("commit", 1, 301)), {
        ok: true,
        seq: 301,
        epoch: 2,
      });
      assert.equal(await b.firstSeqOfEpoch(ch, 2), 302);
      assert.deepEqual((await a.read(ch, 102, 64)).map((e) => e.seq), [301]);
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
    await nats.stop();
  }
});

test(
  "relays on one NATS share API keys and the signing key: a token from one works on the other, a revocation on all",
  {
    skip: SKIP,
  },
  async () => {
    const nats = await startNats();
    const dir = await tempDir();
    const keysCli = async (...args: string[]) => {
      const p = spawnScript("mod.ts", ["keys", ...args, "--store", nats.url]);
      return { code: await p.exited, out: p.stdout(), err: p.stderr() };
    };
    const token = async (port: number, key: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/v1/tokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
      });
      return { status: res.status, body: await res.json() as Record<string, unknown> };
    };
    const made = await keysCli("create", "--org", "acme", "--json");
    assert.equal(made.code, 0, made.err);
    const { key, id } = JSON.parse(made.out) as { key: string; id: string };
    const args = ["--store", nats.url, "--auth", "--data-dir", dir];
    const r1 = await startRelayProcess(args);
    const r2 = await startRelayProcess(args);
    const clients: RelayClient[] = [];
    const at2 = (t: string) => {
      const c = relayClient(r2.url, { token: () => Promise.resolve(t) });
      clients.push(c);
      return c;
    };
    try {
      // A token issued by r1 is good on r2: both sign and verify with the key kept in NATS.
      const t1 = await token(r1.port, key);
      assert.equal(t1.status, 200, JSON.stringify(t1.body));
      const c = at2(t1.body.token as string);
      assert.equal(await c.create("acme/nats/auth"), true);
      await assert.rejects(c.create("globex/nats/auth"), { code: "auth", message: /"acme"/ });
      // Nothing was written to the data dir: no auth.db, no signing-key.jwk.
      assert.deepEqual(await fsp.readdir(dir), []);
      const listed = await keysCli("list", "--json");
      assert.deepEqual((JSON.parse(listed.out) as { id: string }[]).map((k) => k.id), [id]);
      // Revoked through the CLI on NATS: r2 refuses the key's token at the next hello, r1 new tokens.
      assert.equal((await keysCli("revoke", id)).code, 0);
      await assert.rejects(at2(t1.body.token as string).create("acme/nats/auth2"), {
        code: "auth",
        message: /revoked/,
      });
      const refused = await token(r1.port, key);
      assert.equal(refused.status, 401);
      assert.equal((refused.body.error as { reason: string }).reason, "revoked_key");
      const unknown = await keysCli("revoke", "key_0000000000000000");
      assert.equal(unknown.code, 1);
      assert.match(unknown.err, /no key "key_0000000000000000" in "nats:/);
    } finally {
      for (const c of clients) await c.close();
      await r1.proc.kill();
      await r2.proc.kill();
      await nats.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  },
);

test("NatsAuthStore: relays starting at once agree on one signing key; keys round-trip", {
  skip: SKIP,
}, async () => {
  const nats = await startNats();
  const stores = await Promise.all([1, 2, 3].map(() => NatsAuthStore.open(nats.url)));
  try {
    let made = 0;
    const jwks = await Promise.all(
      stores.map((s, i) => s.loadOrCreate(() => Promise.resolve(`{"n":${i},"made":${++made}}`))),
    );
    assert.equal(new Set(jwks).size, 1, jwks.join(" "));
    const { key, info } = await stores[0]!.create("acme");
    assert.deepEqual(await stores[1]!.lookup(key), info);
    assert.deepEqual(await stores[2]!.get(info.id), info);
    assert.equal(
      await stores[1]!.lookup(key.slice(0, -1) + (key.endsWith("A") ? "B" : "A")),
      undefined,
    );
    assert.equal(await stores[1]!.lookup("not a key"), undefined);
    assert.equal(await stores[1]!.get("key_../../x"), undefined);
    await assert.rejects(stores[0]!.create("bad org!"), { code: "invalid_argument" });
    const revoked = await Promise.all(stores.map((s) => s.revoke(info.id)));
    assert.deepEqual(revoked, [true, true, true]);
    const after = await stores[2]!.get(info.id);
    assert.ok(after?.revoked, "revoked");
    assert.deepEqual(await stores[0]!.list(), [after]);
    assert.equal(await stores[0]!.revoke("key_0123456789abcdef"), false);
  } finally {
    for (const s of stores) await s.close();
    await nats.stop();
  }
});

test(
  "NATS mailbox leases across relays: held items skip other takes, come back when lapsed or released, acks delete",
  {
    skip: SKIP,
  },
  async () => {
    const nats = await startNats();
    const logs = await Promise.all([1, 2, 3].map(() => NatsLog.open(nats.url, { prefix: "mbl" })));
    const nums = (es: { payload: Uint8Array }[]) => es.map((e) => numOf(e.payload));
    try {
      const T = Date.now();
      const ids = [rid(), rid(), rid()];
      for (const [i, id] of ids.entries()) {
        await logs[i]!.mailboxPut("inv:lease", id, opaque(i), T + 600_000);
      }
      const first = await logs[0]!.mailboxTake("inv:lease", T, 5000);
      assert.deepEqual(nums(first), [0, 1, 2]);
      // Held until T + 5000, whichever relay asks.
      assert.deepEqual(await logs[1]!.mailboxTake("inv:lease", T + 1000, 5000), []);
      assert.deepEqual(await logs[2]!.mailboxTake("inv:lease", T + 4999, 5000), []);
      // An ack on another relay deletes for good; unknown and repeated ids are fine.
      assert.equal(await logs[1]!.mailboxAck("inv:lease", [ids[1]!, rid()]), 1);
      assert.equal(await logs[2]!.mailboxAck("inv:lease", [ids[1]!]), 0);
      // Lapsed: the rest come back, to one relay.
      const second = await logs[2]!.mailboxTake("inv:lease", T + 5001, 5000);
      assert.deepEqual(nums(second), [0, 2]);
      assert.deepEqual(await logs[0]!.mailboxTake("inv:lease", T + 5001, 5000), []);
      // The first take's leases are stale: releasing them changes nothing.
      const leases = (es: typeof first) => es.map((e) => ({ id: e.id, lease: e.lease! }));
      await logs[0]!.mailboxRelease("inv:lease", leases(first));
      assert.deepEqual(await logs[1]!.mailboxTake("inv:lease", T + 6000, 5000), []);
      // Releasing the current ones hands the items back at once.
      await logs[2]!.mailboxRelease("inv:lease", leases(second));
      const third = await logs[1]!.mailboxTake("inv:lease", T + 6000, 5000);
      assert.deepEqual(nums(third), [0, 2]);
      assert.equal(await logs[0]!.mailboxAck("inv:lease", ids), 2);
      // Releasing an acked item does not bring it back.
      await logs[1]!.mailboxRelease("inv:lease", leases(third));
      assert.deepEqual(await logs[2]!.mailboxTake("inv:lease", T + 100_000, 5000), []);
      // An expired item is never handed out, and a take deletes it.
      await logs[0]!.mailboxPut("inv:short", rid(), opaque(9), T + 1000);
      assert.deepEqual(await logs[1]!.mailboxTake("inv:short", T + 2000, 5000), []);
      assert.deepEqual(await logs[2]!.mailboxTake("inv:short", T, 5000), []);
    } finally {
      for (const l of logs) await l.close();
      await nats.stop();
    }
  },
);

test(
  "NATS: relays re-taking lapsed leases at once never both get an item",
  { skip: SKIP },
  async () => {
    const nats = await startNats();
    const logs = await Promise.all([1, 2, 3].map(() => NatsLog.open(nats.url, { prefix: "mbr" })));
    try {
      const N = 30;
      const T = Date.now();
      for (let i = 0; i < N; i++) {
        await logs[i % 3]!.mailboxPut("kp:lapse", rid(), opaque(i), T + 600_000);
      }
      assert.equal((await logs[0]!.mailboxTake("kp:lapse", T, 1000)).length, N);
      // Every lease has lapsed: every relay takes at once, twice over.
      const takes = await Promise.all(
        logs.flatMap((l) => [
          l.mailboxTake("kp:lapse", T + 2000, 60_000),
          l.mailboxTake("kp:lapse", T + 2000, 60_000),
        ]),
      );
      const got = takes.flatMap((t) => t.map((x) => numOf(x.payload)));
      assert.deepEqual(got.sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i));
    } finally {
      for (const l of logs) await l.close();
      await nats.stop();
    }
  },
);

test(
  "NATS: what a client took on one relay and never acked is handed out by another once it drops",
  { skip: SKIP },
  async () => {
    const nats = await startNats();
    // A lease far longer than the test: items come back because the taker's relay hands
    // them back when its connection closes.
    const env = { SKYTALE_RELAY_MAILBOX_LEASE_MS: "600000" };
    const r1 = await startRelayProcess(["--store", nats.url], env);
    const r2 = await startRelayProcess(["--store", nats.url], env);
    const a = at(r1.url);
    const b = at(r2.url);
    const c = at(r1.url);
    /** Leases until `n` items came back, maybe over several takes (a release goes item by item). */
    const leaseAll = async (cl: RelayClient, n: number) => {
      const got: number[] = [];
      await eventually(
        async () => {
          got.push(
            ...(await cl.mailboxLease(box("wel:nats").address, box("wel:nats").takeKey)).map((i) =>
              numOf(i.payload)
            ),
          );
          return got.length >= n;
        },
        15_000,
        `${n} items`,
      );
      return got.sort((x, y) => x - y);
    };
    try {
      for (const n of [1, 2, 3]) await a.mailboxPut(box("wel:nats").address, opaque(n), 60);
      const taken = await a.mailboxLease(box("wel:nats").address, box("wel:nats").takeKey);
      assert.deepEqual(taken.map((i) => numOf(i.payload)), [1, 2, 3]);
      assert.deepEqual(await b.mailboxLease(box("wel:nats").address, box("wel:nats").takeKey), []);
      // a goes away without acking: r1 hands its leases back, and b on r2 gets them.
      await a.close();
      assert.deepEqual(await leaseAll(b, 3), [1, 2, 3]);
      // b acks two and goes away: r2 hands back only the third, to c on r1.
      await b.mailboxAck(
        box("wel:nats").address,
        [taken[0]!.id, taken[2]!.id],
        box("wel:nats").takeKey,
      );
      await b.close();
      assert.deepEqual(await leaseAll(c, 1), [2]);
      await c.mailboxAck(box("wel:nats").address, [taken[1]!.id], box("wel:nats").takeKey);
    } finally {
      await a.close();
      await b.close();
      await c.close();
      await r1.proc.kill();
      await r2.proc.kill();
      await nats.stop();
    }
  },
);

test(
  "a relay's /healthz answers 503 while its NATS is down, and the relay recovers when it is back",
  {
    skip: SKIP,
  },
  async () => {
    const nats = await startNats();
    const r = await startRelayProcess(["--store", nats.url]);
    const c = at(r.url);
    const health = async () => {
      const res = await fetch(`http://127.0.0.1:${r.port}/healthz`);
      return { status: res.status, text: await res.text() };
    };
    try {
      assert.deepEqual(await health(), { status: 200, text: "ok" });
      await c.create("acme/nats/outage");
      const pub = (n: number) =>
        c.publish("acme/nats/outage", {
          id: rid(),
          kind: "application",
          epoch: 0,
          payload: opaque(n),
        });
      assert.deepEqual(await pub(1), { ok: true, seq: 1, epoch: 0 });
      await nats.pause();
      let last = { status: 0, text: "" };
      await eventually(async () => (last = await health()).status === 503, 20_000, "a 503");
      assert.match(last.text, /^unavailable: NATS is not reachable/);
      assert.equal(r.proc.child.exitCode, null);
      assert.equal((await fetch(`http://127.0.0.1:${r.port}/metrics`)).status, 200);
      // NATS back (same port, same store): healthy again, and the channel goes on where it was.
      await nats.resume();
      await eventually(async () => (await health()).status === 200, 30_000, "healthy again");
      assert.deepEqual(await pub(2), { ok: true, seq: 2, epoch: 0 });
    } finally {
      await c.close();
      await r.proc.kill();
      await nats.stop();
    }
  },
);

test("relays on a 3-node NATS cluster with --nats-replicas 3 go on when a NATS node dies", {
  skip: SKIP,
}, async () => {
  const { nodes, urls } = await startNatsCluster(3);
  const rotated = [nodes[1]!.url, nodes[2]!.url, nodes[0]!.url].join(",");
  const r1 = await startRelayProcess(["--store", urls, "--nats-replicas", "3"]);
  const r2 = await startRelayProcess(["--store", rotated, "--nats-replicas", "3"]);
  const a = at(r1.url);
  const b = at(r2.url);
  const ch = "acme/nats/cluster";
  /**
   * Publishes `n`. The relay rides out a stream leader election by itself (it tries an append
   * again for 8 s); a client whose publish failed anyway sends it again with the same id.
   */
  let refused = 0;
  const publish = async (n: number) => {
    const e = { id: rid(), kind: "application" as const, epoch: 0, payload: opaque(n) };
    let seq = 0;
    await eventually(
      async () => {
        const r = await a.publish(ch, e).catch(() => void refused++);
        if (r?.ok) seq = r.seq;
        return seq > 0;
      },
      30_000,
      `publish ${n}`,
    );
    return seq;
  };
  try {
    assert.equal(await a.create(ch), true);
    const got: LogEntry[] = [];
    await b.subscribe(ch, { seq: 1 }, (e) => void got.push(e));
    for (let i = 0; i < 20; i++) assert.equal(await publish(i), i + 1);
    await eventually(() => got.length >= 20, 20_000, "20 deliveries");
    // Every stream the relays made is replicated on all three nodes.
    const nc = await connect({ servers: urls.split(",").map((u) => u.slice("nats://".length)) });
    try {
      const jsm = await jetstreamManager(nc);
      const replicas: Record<string, number> = {};
      for await (const si of jsm.streams.list()) replicas[si.config.name] = si.config.num_replicas;
      assert.equal(Object.keys(replicas).length, 3, JSON.stringify(replicas)); // IDS, MB, the channel
      for (const [name, r] of Object.entries(replicas)) assert.equal(r, 3, name);
    } finally {
      await nc.close();
    }
    // r1's first NATS node dies: r1 reconnects to another, the replicated stream elects a leader.
    await nodes[0]!.pause();
    for (let i = 20; i < 40; i++) assert.equal(await publish(i), i + 1);
    await eventually(() => got.length >= 40, 60_000, `40 deliveries (${got.length})`);
    process.stderr.write(`# publishes refused while the cluster recovered: ${refused}\n`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got.map((e) => e.seq), Array.from({ length: 40 }, (_, i) => i + 1));
    assert.deepEqual(got.map((e) => numOf(e.payload)), Array.from({ length: 40 }, (_, i) => i));
    for (const port of [r1.port, r2.port]) {
      await eventually(
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200,
        20_000,
        `relay on ${port} healthy`,
      );
    }
  } finally {
    await a.close();
    await b.close();
    await r1.proc.kill();
    await r2.proc.kill();
    for (const n of nodes) await n.stop();
  }
});
