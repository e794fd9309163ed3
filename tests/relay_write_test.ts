// The relay's write path: group commit of SQLite appends (one transaction per turn of the
// event loop), in the log alone and through a relay process under load, SIGKILL included.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { SqliteLog } from "../src/relay/log/sqlite.ts";
import type { AppendResult, EntryKind } from "../src/relay/log/types.ts";
import type { PublishResult, RelayClient } from "../src/relay/client.ts";
import {
  freePort,
  numbered,
  numOf,
  reaping,
  relayClient,
  rid,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

const CHANNELS = Array.from({ length: 8 }, (_, i) => `acme/write/c${i}`);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

function entry(kind: EntryKind, epoch: number, n: number, id: Uint8Array = rid()) {
  return { id, kind, epoch, payload: numbered(n), time: Date.now() };
}

test("appends made in one turn of the event loop share one transaction and keep every check", async () => {
  const dir = await tempDir();
  const file = path.join(dir, "relay.db");
  let log = await SqliteLog.open(file);
  try {
    for (const c of CHANNELS.slice(0, 3)) await log.create(c);
    const [a, b, c] = CHANNELS as [string, string, string];
    const dup = rid();
    const calls: [string, Promise<AppendResult>][] = [];
    const put = (ch: string, p: Promise<AppendResult>) => calls.push([ch, p]);
    for (let i = 0; i < 10; i++) {
      put(a, log.append(a, entry("application", 0, i)));
      put(b, log.append(b, entry("application", 0, 100 + i)));
    }
    put(a, log.append(a, entry("application", 0, 1000, dup)));
    put(a, log.append(a, entry("application", 0, 1001, dup))); // a retry in the same batch
    put(c, log.append(c, entry("commit", 0, 2000))); // takes epoch 0 → 1
    put(c, log.append(c, entry("commit", 0, 2001))); // built on epoch 0 too: stale
    put(c, log.append(c, entry("application", 1, 2002)));
    put("acme/write/none", log.append("acme/write/none", entry("application", 0, 3000)));
    const results = await Promise.all(calls.map(([, p]) => p));
    assert.deepEqual(log.batchStats(), { batches: 1, appends: calls.length });

    const seqsOf = (ch: string) =>
      results.filter((r, i) => calls[i]![0] === ch && r.ok).map((r) => r.ok ? r.seq : 0);
    // Call order is seq order; the retry got the original's seq, not a new one.
    assert.deepEqual(seqsOf(a), [...Array.from({ length: 11 }, (_, i) => i + 1), 11]);
    assert.deepEqual(seqsOf(b), Array.from({ length: 10 }, (_, i) => i + 1));
    assert.deepEqual(results.slice(-4), [
      { ok: true, seq: 1, epoch: 1 },
      { ok: false, code: "stale_epoch", epoch: 1 },
      { ok: true, seq: 2, epoch: 1 },
      { ok: false, code: "unknown_channel", epoch: 0 },
    ]);
    // Retried alone later, the duplicate still answers with the original.
    assert.deepEqual(await log.append(a, entry("application", 0, 1002, dup)), {
      ok: true,
      seq: 11,
      epoch: 0,
    });

    await log.close();
    log = await SqliteLog.open(file);
    assert.deepEqual(await log.info(a), { epoch: 0, head: 11 });
    assert.deepEqual(await log.info(c), { epoch: 1, head: 2 });
    assert.equal(await log.firstSeqOfEpoch(c, 1), 2);
    const stored = await log.read(a, 1, 100);
    assert.deepEqual(stored.map((e) => numOf(e.payload)), [
      ...Array.from({ length: 10 }, (_, i) => i),
      1000,
    ]);
  } finally {
    await log.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("close() stores the appends queued before it; count retention holds inside a batch", async () => {
  const dir = await tempDir();
  const file = path.join(dir, "relay.db");
  let log = await SqliteLog.open(file, { retention: { maxCount: 5 } });
  try {
    const [a] = CHANNELS as [string];
    await log.create(a);
    const pending = Array.from(
      { length: 20 },
      (_, i) => log.append(a, entry(i === 3 ? "commit" : "application", i > 3 ? 1 : 0, i)),
    );
    await log.close();
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((r) => r.ok && r.seq),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    await assert.rejects(async () => await log.append(a, entry("application", 1, 99)), {
      code: "closed",
    });
    log = await SqliteLog.open(file);
    assert.deepEqual(await log.info(a), { epoch: 1, head: 20 });
    // The newest 5 and the commit (never trimmed) are kept.
    assert.deepEqual((await log.read(a, 1, 100)).map((e) => e.seq), [4, 16, 17, 18, 19, 20]);
  } finally {
    await log.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

interface Acked {
  channel: string;
  id: Uint8Array;
  seq: number;
  epoch: number;
}

/** Publishes `n` entries from `client` over the channels, all at once; records the acks. */
async function load(client: RelayClient, k: number, n: number, acked: Acked[]): Promise<void> {
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    const channel = CHANNELS[(k * 3 + i) % CHANNELS.length]!;
    const id = rid();
    const r = await client.publish(channel, {
      id,
      kind: "application",
      epoch: 0,
      payload: numbered(k * 100_000 + i),
    });
    assert.equal(r.ok, true, `publish ${k}/${i} to ${channel}: ${JSON.stringify(r)}`);
    if (r.ok) acked.push({ channel, id, seq: r.seq, epoch: r.epoch });
  }));
}

/** Checks that each channel's acks are seqs 1..n, once each. */
function assertGapless(acked: Acked[]): void {
  for (const ch of CHANNELS) {
    const seqs = acked.filter((a) => a.channel === ch).map((a) => a.seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1), ch);
  }
}

test("a relay under concurrent publishes from many connections acks each once, gapless, and keeps every acked entry through SIGKILL", async () => {
  await reaping(async () => {
    const dir = await tempDir();
    const args = [
      "--data-dir",
      dir,
      "--port",
      String(await freePort()),
      "--publish-rate",
      "100000",
    ];
    let relay = await startRelayProcess(args);
    let clients = Array.from({ length: 4 }, () => relayClient(relay.url));
    try {
      for (const ch of CHANNELS) await clients[0]!.create(ch);
      const acked: Acked[] = [];
      // Two commits built on epoch 0 of one channel race the load: exactly one takes the epoch.
      const commitIds = [rid(), rid()];
      const commits = Promise.all(
        [0, 1].map((k) =>
          clients[k]!.publish(CHANNELS[0]!, {
            id: commitIds[k]!,
            kind: "commit",
            epoch: 0,
            payload: numbered(-1 - k),
          })
        ),
      );
      await Promise.all(clients.map((c, k) => load(c, k, 150, acked)));
      const raced = await commits;
      const w = raced.findIndex((r) => r.ok);
      const won = raced[w] as PublishResult & { ok: true };
      assert.equal(won.epoch, 1);
      assert.deepEqual(raced[1 - w], { ok: false, code: "stale_epoch", epoch: 1 });
      acked.push({ channel: CHANNELS[0]!, id: commitIds[w]!, seq: won.seq, epoch: 1 });
      assert.equal(acked.length, 4 * 150 + 1);
      assertGapless(acked);

      // Retries, from other connections and all at once, get the original acks.
      const sample = acked.filter((_, i) => i % 37 === 0 && i < 600);
      const again = await Promise.all(sample.map((a, i) =>
        clients[i % 4]!.publish(a.channel, {
          id: a.id,
          kind: "application",
          epoch: 0,
          payload: numbered(0),
        })
      ));
      assert.deepEqual(again, sample.map((a) => ({ ok: true, seq: a.seq, epoch: a.epoch })));

      // Load again and kill the relay with publishes in flight.
      const before = acked.length;
      const inFlight = clients.map((c, k) => load(c, k, 400, acked).catch(() => {}));
      await new Promise((r) => setTimeout(r, 150));
      relay.proc.child.kill("SIGKILL");
      await relay.proc.exited;
      const killedAt = acked.length;
      await Promise.all(clients.map((c) => c.close()));
      await Promise.all(inFlight);
      assert.equal(acked.length, killedAt, "no ack after the kill");

      // Every acked entry is in the log, at its seq; each channel is gapless up to its head.
      const log = await SqliteLog.open(path.join(dir, "relay.db"));
      try {
        for (const ch of CHANNELS) {
          const info = (await log.info(ch))!;
          const stored = await log.read(ch, 1, 100_000);
          assert.deepEqual(
            stored.map((e) => e.seq),
            Array.from({ length: info.head }, (_, i) => i + 1),
          );
          const bySeq = new Map(stored.map((e) => [e.seq, hex(e.id)]));
          for (const a of acked.filter((x) => x.channel === ch)) {
            assert.equal(bySeq.get(a.seq), hex(a.id), `${ch} seq ${a.seq}`);
          }
        }
      } finally {
        await log.close();
      }

      // The restarted relay answers a retry of an entry acked just before the kill with its ack.
      relay = await startRelayProcess(args);
      clients = [relayClient(relay.url)];
      const last = acked[acked.length - 1]!;
      assert.ok(acked.length > before, "some publishes were acked under the second load");
      assert.deepEqual(
        await clients[0]!.publish(last.channel, {
          id: last.id,
          kind: "application",
          epoch: 0,
          payload: numbered(0),
        }),
        { ok: true, seq: last.seq, epoch: last.epoch },
      );
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await relay.proc.kill();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
