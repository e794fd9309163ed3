import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import { KeyStore } from "../src/relay/auth.ts";
import { connectWebSocket, type RelayClient } from "../src/relay/client.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";
import type { LogEntry } from "../src/relay/log/types.ts";
import {
  box,
  eventually,
  relayClient,
  rid,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";
import { SKIP as NATS_SKIP, startNats } from "./_nats.ts";

const opaque = () => crypto.getRandomValues(new Uint8Array(16));

const client = relayClient;

function pub(
  c: RelayClient,
  ch: string,
  kind: "application" | "commit" = "application",
  epoch = 0,
) {
  return c.publish(ch, { id: rid(), kind, epoch, payload: opaque() });
}

async function collect(url: string, ch: string, from: number, n: number): Promise<{
  seqs: number[];
  notes: string[];
}> {
  const notes: string[] = [];
  const c = client(url, { onError: (e) => notes.push((e as Error).message) });
  const got: LogEntry[] = [];
  try {
    await c.subscribe(ch, { seq: from }, (e) => void got.push(e));
    await eventually(() => got.length >= n, 10_000, `${n} deliveries`);
    await new Promise((r) => setTimeout(r, 100));
    return { seqs: got.map((e) => e.seq), notes };
  } finally {
    await c.close();
  }
}

test("each limit breach gets an error the client sees: frame size, channels, publish rate, mailbox TTL", async () => {
  const { proc, url, port } = await startRelayProcess([
    "--store",
    "memory",
    "--max-frame-bytes",
    "4096",
    "--max-channels-per-connection",
    "2",
    "--publish-rate",
    "2",
    "--mailbox-ttl",
    "1",
  ]);
  const a = client(url);
  const b = client(url);
  const m = client(url);
  try {
    for (const ch of ["acme/l/one", "acme/l/two", "acme/l/three"]) await a.create(ch);
    // Frame size.
    await assert.rejects(
      a.publish("acme/l/one", {
        id: rid(),
        kind: "application",
        epoch: 0,
        payload: new Uint8Array(5000),
      }),
      { code: "too_large", message: /over the limit of 4096 bytes/ },
    );
    // Channels per connection.
    await a.subscribe("acme/l/one", { seq: 1 }, () => {});
    await a.subscribe("acme/l/two", { seq: 1 }, () => {});
    await assert.rejects(a.subscribe("acme/l/three", { seq: 1 }, () => {}), {
      code: "limit",
      message: /2 subscriptions, the limit/,
    });
    // Publish rate: 2 per second, bursts of 4.
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => pub(b, "acme/l/one")));
    const refused = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.ok(refused.length >= 3 && refused.length <= 4, `${refused.length} refused`);
    for (const r of refused) {
      assert.equal(r.reason.code, "limit");
      assert.match(r.reason.message, /rate limit of 2 per second/);
    }
    // Mailbox TTL: a longer TTL is cut to the relay's 1 s.
    await m.mailboxPut(box("kp:bob").address, opaque(), 3600);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await m.mailboxTake(box("kp:bob").address, box("kp:bob").takeKey), []);
    // The connection survives every breach.
    assert.ok((await a.ping()) >= 0);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (n: string) => Number(new RegExp(`^${n} (\\d+)$`, "m").exec(metrics)?.[1]);
    assert.ok(value("skytale_relay_limit_breaches_total") >= 4, metrics);
    assert.equal(value("skytale_relay_connections"), 3);
    assert.equal(value("skytale_relay_subscriptions"), 2);
    assert.ok(value("skytale_relay_frames_in_total") > 10);
    assert.ok(value("skytale_relay_bytes_out_total") > 0);
    assert.ok(value("skytale_relay_acks_total") >= 4);
    assert.match(metrics, /^skytale_relay_log_append_seconds_bucket\{le="\+Inf"\} \d+$/m);
    assert.match(metrics, /^skytale_relay_log_append_seconds_count \d+$/m);
    // Structured logs: JSON lines on stderr, one for each breach.
    const lines = proc.stderr().trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.level === "info" && /listening on/.test(l.msg)));
    assert.ok(lines.filter((l) => l.msg === "limit exceeded").length >= 4);
  } finally {
    await a.close();
    await b.close();
    await m.close();
    await proc.kill();
  }
});

/** A relay on `store`; for "nats", on a NATS server of its own. */
async function retentionRelay(store: string, dir: string, args: string[]) {
  const nats = store === "nats" ? await startNats() : undefined;
  const relay = await startRelayProcess([
    "--store",
    nats?.url ?? store,
    "--data-dir",
    dir,
    ...args,
  ]);
  return {
    ...relay,
    stop: async () => {
      await relay.proc.kill();
      await nats?.stop();
    },
  };
}

for (const store of ["memory", "sqlite", "nats"]) {
  const skip = store === "nats" ? NATS_SKIP : false;
  test(
    `retention by count (${store}) trims old messages, keeps commits, and a resume skips to what is left`,
    {
      skip,
    },
    async () => {
      const dir = await tempDir();
      const { stop, url } = await retentionRelay(store, dir, ["--retention-count", "5"]);
      const c = client(url);
      const ch = "acme/ret/count";
      try {
        await c.create(ch);
        const live: number[] = [];
        await c.subscribe(ch, { seq: 1 }, (e) => void live.push(e.seq));
        for (let i = 0; i < 3; i++) await pub(c, ch); // 1-3
        assert.deepEqual(await pub(c, ch, "commit", 0), { ok: true, seq: 4, epoch: 1 });
        for (let i = 0; i < 8; i++) await pub(c, ch, "application", 1); // 5-12
        // A live subscriber got everything.
        await eventually(() => live.length === 12, 10_000, "live deliveries");
        // A new subscriber from 1 gets the commit and the newest five seqs.
        const fresh = await collect(url, ch, 1, 6);
        assert.deepEqual(fresh.seqs, [4, 8, 9, 10, 11, 12]);
        // A member resuming at seq 3 is told what it missed and goes on.
        const resumed = await collect(url, ch, 3, 6);
        assert.deepEqual(resumed.seqs, [4, 8, 9, 10, 11, 12]);
        assert.ok(resumed.notes.some((n) => /5-7 .* retention/.test(n)), String(resumed.notes));
        // Epoch 1 still starts after the commit, and new entries keep their seqs.
        assert.deepEqual(await pub(c, ch, "application", 1), { ok: true, seq: 13, epoch: 1 });
        // A subscription from epoch 1 starts after the commit and skips the trimmed seqs.
        const byEpoch: number[] = [];
        const e = client(url);
        try {
          await e.subscribe(ch, { epoch: 1 }, (x) => void byEpoch.push(x.seq));
          await eventually(() => byEpoch.length >= 5, 10_000, "entries of epoch 1");
          await new Promise((r) => setTimeout(r, 100));
          assert.deepEqual(byEpoch, [9, 10, 11, 12, 13]); // 13 pushed 8 out
        } finally {
          await e.close();
        }
      } finally {
        await c.close();
        await stop();
        await fsp.rm(dir, { recursive: true, force: true });
      }
    },
  );

  test(`retention by age (${store}) deletes old messages but never commits`, { skip }, async () => {
    const dir = await tempDir();
    const { stop, url } = await retentionRelay(store, dir, ["--retention-age", "1s"]);
    const c = client(url);
    const ch = "acme/ret/age";
    try {
      await c.create(ch);
      for (let i = 0; i < 3; i++) await pub(c, ch);
      await pub(c, ch, "commit", 0); // 4
      await new Promise((r) => setTimeout(r, 2500));
      await pub(c, ch, "application", 1); // 5
      const got = await collect(url, ch, 1, 2);
      assert.deepEqual(got.seqs, [4, 5]);
      // Even with every message aged out, seqs and the epoch go on from where they were.
      await new Promise((r) => setTimeout(r, 2500));
      assert.deepEqual(await pub(c, ch, "application", 1), { ok: true, seq: 6, epoch: 1 });
      assert.deepEqual(await pub(c, ch, "commit", 1), { ok: true, seq: 7, epoch: 2 });
    } finally {
      await c.close();
      await stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
}

test("skytale relay refuses malformed limit options", async () => {
  for (
    const args of [
      ["--retention-age", "soon"],
      ["--publish-rate", "0"],
      ["--tls-cert", "x.pem"],
      ["--mailbox-ttl", "-1"],
      ["--nats-replicas", "3"], // needs --store nats://
      ["--mailbox-lease", "0"],
      ["--org-publish-rate", "0"],
      ["--max-connections-per-org", "x"],
      ["--token-failure-window", "soon"],
    ]
  ) {
    const p = spawnScript("mod.ts", ["relay", "--store", "memory", ...args]);
    assert.equal(await p.exited, 2, args.join(" "));
    assert.match(p.stderr(), /Usage: skytale relay/);
  }
});

test("a relay with --tls-cert/--tls-key serves wss:// and https://, with auth, to a client that trusts the CA", async () => {
  const dir = await tempDir();
  const ca = path.join(dir, "ca.pem");
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "ignore", cwd: dir });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  // A throwaway CA, and a certificate for 127.0.0.1 that it signs.
  ssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", ca, "-days", "1", "-subj", "/CN=test CA");
  ssl("req", ...ec, "-keyout", key, "-out", "leaf.csr", "-subj", "/CN=127.0.0.1");
  await fsp.writeFile(
    path.join(dir, "leaf.ext"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  ssl(
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    ca,
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "1",
    "-extfile",
    "leaf.ext",
  );
  const keys = await KeyStore.open(dir);
  const { key: apiKey } = await keys.create("acme");
  await keys.close();
  const relay = spawnScript("mod.ts", [
    "relay",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--store",
    "memory",
    "--data-dir",
    dir,
    "--auth",
    "--tls-cert",
    cert,
    "--tls-key",
    key,
  ]);
  try {
    const m = await relay.waitFor(/listening on wss:\/\/127\.0\.0\.1:(\d+)/);
    const origin = `https://127.0.0.1:${m[1]}`;
    const child = spawnScript("tests/fixtures/relay_tls_client.ts", [], {
      SKYTALE_RELAY: origin,
      SKYTALE_API_KEY: apiKey,
      NODE_EXTRA_CA_CERTS: ca,
      DENO_CERT: ca,
    });
    const timer = setTimeout(() => child.child.kill("SIGKILL"), 60_000);
    await child.exited;
    clearTimeout(timer);
    const out = JSON.parse(child.stdout().trim() || "{}") as Record<string, unknown>;
    assert.deepEqual(out, { health: "ok", received: ["over tls"] }, child.stderr());
  } finally {
    await relay.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a relay whose client died without closing still exits promptly and cleanly on SIGTERM", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  // A client process that is SIGKILLed: its WebSocket never sends a close frame.
  const peer = spawnScript("tests/fixtures/ws_peer.ts", [url]);
  await peer.waitFor(/^open$/m);
  await peer.kill("SIGKILL");
  await proc.kill("SIGTERM"); // SIGKILLs after 10 s
  assert.equal(proc.child.signalCode, null, "the relay had to be SIGKILLed");
  assert.equal(proc.child.exitCode, 0);
  assert.match(proc.stderr(), /skytale relay: stopped/);
});

test("per-org quotas on an --auth relay: channels, connections and publish rate each answer limit naming the flag", async () => {
  const dir = await tempDir();
  const keys = await KeyStore.open(dir);
  const { key: acmeKey } = await keys.create("acme");
  const { key: globexKey } = await keys.create("globex");
  await keys.close();
  const { proc, url, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
    "--max-channels-per-org",
    "2",
    "--max-connections-per-org",
    "2",
    "--org-publish-rate",
    "2",
  ]);
  const token = async (key: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
    });
    return ((await res.json()) as { token: string }).token;
  };
  const acmeToken = await token(acmeKey);
  const a = client(url, { token: () => Promise.resolve(acmeToken) });
  const b = client(url, { token: () => Promise.resolve(acmeToken) });
  const g = client(url, { token: async () => await token(globexKey) });
  try {
    // Channels per org.
    assert.equal(await a.create("acme/q/one"), true);
    assert.equal(await b.create("acme/q/two"), true);
    await assert.rejects(a.create("acme/q/three"), {
      code: "limit",
      message: /organisation "acme" has created 2 channels.*\(--max-channels-per-org\)/,
    });
    assert.equal(await a.create("acme/q/one"), false, "an existing channel is no new channel");
    assert.equal(await g.create("globex/q/one"), true, "another org has its own quota");

    // Connections per org: a and b are acme's two; a third hello is refused.
    const ws = await connectWebSocket(url, 5000);
    const frames: Frame[] = [];
    ws.onmessage = (ev) => frames.push(decodeFrame(new Uint8Array(ev.data as ArrayBuffer)));
    ws.send(encodeFrame({ type: "hello", reqId: 1, token: acmeToken }));
    await eventually(() => frames.length >= 1, 5000, "an answer to hello");
    const err = frames[0]!;
    assert.ok(err.type === "error" && err.code === "limit", JSON.stringify(err));
    assert.match(
      err.type === "error" ? err.message : "",
      /"acme" already has 2 connections.*\(--max-connections-per-org\)/,
    );
    ws.close();

    // Publish rate per org: 2 per second, bursts of 4, shared by a and b.
    const results = await Promise.allSettled([
      ...Array.from({ length: 4 }, () => pub(a, "acme/q/one")),
      ...Array.from({ length: 4 }, () => pub(b, "acme/q/two")),
    ]);
    const refused = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assert.ok(refused.length >= 3 && refused.length <= 4, `${refused.length} refused`);
    for (const r of refused) {
      assert.equal(r.reason.code, "limit");
      assert.match(r.reason.message, /organisation "acme" of 2 per second.*\(--org-publish-rate\)/);
    }
    assert.ok((await pub(g, "globex/q/one")).ok, "another org publishes on");
    const lines = proc.stderr().trim().split("\n").map((l) => JSON.parse(l));
    const limits = new Set(lines.filter((l) => l.msg === "limit exceeded").map((l) => l.limit));
    assert.deepEqual(
      [...limits].sort(),
      ["channels_per_org", "connections_per_org", "org_publish_rate"],
    );
  } finally {
    await a.close();
    await b.close();
    await g.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
