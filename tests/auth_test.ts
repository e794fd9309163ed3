import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { importJWK, SignJWT } from "jose";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { ApiKeyTokens, RelayAuth } from "../src/relay/auth.ts";
import { connectWebSocket } from "../src/relay/client.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";
import { type Relay, startRelay } from "../src/relay/server.ts";
import { MemoryStore } from "../src/store/memory.ts";
import {
  eventually,
  relayClient,
  rid,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

const payload = () => crypto.getRandomValues(new Uint8Array(8));

const client = relayClient;

/** Resolves with `p`, or rejects after `ms`; the timer never outlives the wait. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function keys(dir: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  const p = spawnScript("mod.ts", ["keys", ...args, "--data-dir", dir]);
  return { code: await within(p.exited, 30_000, "skytale keys"), out: p.stdout() };
}

async function createKey(dir: string, org: string): Promise<{ id: string; key: string }> {
  const { code, out } = await keys(dir, "create", "--org", org, "--json");
  assert.equal(code, 0, out);
  const j = JSON.parse(out) as { id: string; key: string; org: string };
  assert.equal(j.org, org);
  assert.match(j.key, /^sk_live_[A-Za-z0-9_-]{43}$/);
  return j;
}

async function postToken(
  port: number,
  auth?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/tokens`, {
    method: "POST",
    headers: auth === undefined ? {} : { authorization: auth },
  });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

/** An in-process relay with auth on over a fresh data dir. */
async function authRelay(
  lifetime: number,
): Promise<{ relay: Relay; auth: RelayAuth; dir: string; close: () => Promise<void> }> {
  const dir = await tempDir();
  const auth = await RelayAuth.open({ dataDir: dir, tokenLifetimeSeconds: lifetime });
  const relay = await startRelay({
    hostname: "127.0.0.1",
    port: 0,
    log: new MemoryLog(),
    authenticate: (t) => auth.authenticate(t),
    onRequest: (r) => auth.handleRequest(r),
  });
  return {
    relay,
    auth,
    dir,
    close: async () => {
      await relay.close();
      await auth.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

test("keys create → POST /v1/tokens → managers with the API key use an authenticated relay", async () => {
  const dir = await tempDir();
  const { key, id } = await createKey(dir, "acme");
  const stat = await fsp.stat(path.join(dir, "auth.db"));
  assert.ok(stat.isFile());
  // Only the hash is stored.
  const db = new TextDecoder("latin1").decode(await fsp.readFile(path.join(dir, "auth.db")));
  assert.ok(!db.includes(key.slice(8)), "auth.db holds the key itself");
  const { proc, url, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
  ]);
  const alice = new SkytaleChannelManager({
    identity: "alice",
    endpoint: url.replace("ws://", "http://"),
    apiKey: key,
    store: new MemoryStore(),
  });
  const bob = new SkytaleChannelManager({
    identity: "bob",
    endpoint: url,
    apiKey: key,
    store: new MemoryStore(),
  });
  try {
    // The signing key is persisted owner-only.
    const mode = (await fsp.stat(path.join(dir, "signing-key.jwk"))).mode & 0o777;
    assert.equal(mode, 0o600);
    const ok = await postToken(port, `Bearer ${key}`);
    assert.equal(ok.status, 200);
    assert.equal(typeof ok.body.token, "string");
    const exp = Date.parse(ok.body.expires_at as string);
    assert.ok(exp > Date.now() + 3500_000 && exp <= Date.now() + 3601_000, `expires_at ${exp}`);
    const wrong = await postToken(port, "Bearer sk_live_" + "A".repeat(43));
    assert.equal(wrong.status, 401);
    assert.deepEqual((wrong.body.error as { code: string }).code, "auth");
    assert.equal((wrong.body.error as { reason: string }).reason, "invalid_key");
    const missing = await postToken(port);
    assert.equal(missing.status, 401);
    assert.equal((missing.body.error as { reason: string }).reason, "missing_key");

    await alice.create("acme/research/results");
    await bob.join(
      "acme/research/results",
      await alice.addMember("acme/research/results", await bob.keyPackage()),
    );
    await alice.send("acme/research/results", "analysis complete");
    const got = await bob.receive("acme/research/results", { timeout: 10 });
    assert.deepEqual(got.map((m) => [m.sender, m.text]), [["alice", "analysis complete"]]);
    // The key's org scopes the channels.
    await assert.rejects(alice.create("globex/research/results"), { code: "auth" });

    const list = await keys(dir, "list", "--json");
    assert.deepEqual((JSON.parse(list.out) as { id: string }[]).map((k) => k.id), [id]);
  } finally {
    await alice.close();
    await bob.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a relay with --auth refuses hellos without a token, with a forged one, and other orgs' channels", async () => {
  const r = await authRelay(3600);
  const { key } = await r.auth.keys.create("acme");
  const good = (await r.auth.issueToken(key)).token;
  const none = client(r.relay.url);
  const forged = client(r.relay.url, {
    token: () => Promise.resolve(good.slice(0, -4) + (good.endsWith("AAAA") ? "BBBB" : "AAAA")),
  });
  const acme = client(r.relay.url, { token: () => Promise.resolve(good) });
  try {
    await assert.rejects(none.create("acme/a/b"), { code: "auth", message: /requires a token/ });
    await assert.rejects(forged.create("acme/a/b"), { code: "auth", message: /not valid/ });
    assert.equal(await acme.create("acme/a/b"), true);
    await assert.rejects(acme.create("globex/a/b"), { code: "auth", message: /"acme"/ });
    await assert.rejects(acme.subscribe("globex/a/b", { seq: 1 }, () => {}), { code: "auth" });
    await assert.rejects(
      acme.publish("globex/a/b", { id: rid(), kind: "application", epoch: 0, payload: payload() }),
      { code: "auth" },
    );
    // A token of another relay (another signing key) is refused too.
    const other = await authRelay(3600);
    try {
      const { key: k2 } = await other.auth.keys.create("acme");
      const foreign = client(r.relay.url, {
        token: async () => (await other.auth.issueToken(k2)).token,
      });
      await assert.rejects(foreign.create("acme/a/b"), { code: "auth" });
      await foreign.close();
    } finally {
      await other.close();
    }
  } finally {
    await none.close();
    await forged.close();
    await acme.close();
    await r.close();
  }
});

test("an expired token is refused at hello, and a session whose token expires gets error auth and is closed", async () => {
  const r = await authRelay(1);
  const { key } = await r.auth.keys.create("acme");
  const t = (await r.auth.issueToken(key)).token;
  const ws = await connectWebSocket(r.relay.url, 5000);
  const frames: Frame[] = [];
  ws.onmessage = (ev) => frames.push(decodeFrame(new Uint8Array(ev.data as ArrayBuffer)));
  const closed = new Promise<number>((resolve) =>
    ws.addEventListener("close", (e) => resolve(e.code))
  );
  try {
    ws.send(encodeFrame({ type: "hello", reqId: 1, token: t }));
    await eventually(() => frames.length >= 1, 5000, "helloOk");
    assert.equal(frames[0]!.type, "helloOk");
    // No renewal: the relay ends the session when the token expires.
    const code = await within(closed, 5000, "the relay closing the session");
    assert.equal(code, 1008);
    const err = frames.find((f) => f.type === "error");
    assert.ok(err && err.type === "error" && err.code === "auth" && /expired/i.test(err.message));
    // The same (now expired) token is refused at hello.
    const late = client(r.relay.url, { token: () => Promise.resolve(t) });
    await assert.rejects(late.create("acme/a/b"), { code: "auth", message: /expired/i });
    await late.close();
  } finally {
    ws.close();
    await r.close();
  }
});

test("a revoked key gets no new token, and its client is refused at renewal", async () => {
  const dir = await tempDir();
  const { key, id } = await createKey(dir, "acme");
  const { proc, url, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
    "--token-lifetime",
    "3",
  ]);
  const tokens = new ApiKeyTokens({ apiKey: key, apiUrls: [`http://127.0.0.1:${port}`] });
  const c = client(url, { token: () => tokens.token() });
  try {
    assert.equal(await c.create("acme/a/b"), true);
    const rev = await keys(dir, "revoke", id);
    assert.equal(rev.code, 0);
    assert.match(rev.out, new RegExp(`revoked ${id}`));
    const refused = await postToken(port, `Bearer ${key}`);
    assert.equal(refused.status, 401);
    assert.equal((refused.body.error as { reason: string }).reason, "revoked_key");
    // Within the token's lifetime (3 s) the client's session ends and cannot be renewed.
    let last: unknown;
    await eventually(
      async () => {
        try {
          await c.create("acme/a/b");
          return false;
        } catch (e) {
          last = e;
          // Under load the 3 s token may expire before the renewal runs ("Token expired");
          // the next attempt must then fail for the revoked key itself.
          return (e as { code?: string }).code === "auth" && /revoked/.test((e as Error).message);
        }
      },
      15_000,
      "the revoked key's client to be refused",
    );
    assert.match((last as Error).message, /revoked/);
    assert.equal((await keys(dir, "revoke", "key_nope")).code, 1);
    const list = JSON.parse((await keys(dir, "list", "--json")).out) as { revoked?: string }[];
    assert.ok(list[0]?.revoked);
  } finally {
    await c.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a long-running client renews its 3 s token on the open connection and never drops", async () => {
  const r = await authRelay(3);
  const { key } = await r.auth.keys.create("acme");
  const tokens = new ApiKeyTokens({ apiKey: key, apiUrls: [`http://127.0.0.1:${r.relay.port}`] });
  let issued = 0;
  const pub = client(r.relay.url, {
    token: async () => {
      const t = await tokens.token();
      issued++;
      return t;
    },
  });
  const sub = client(r.relay.url, { token: () => tokens.token() });
  const got: number[] = [];
  let dropped = false;
  try {
    await pub.create("acme/long/run");
    await sub.subscribe("acme/long/run", { seq: 1 }, (e) => void got.push(e.seq));
    const watch = setInterval(() => {
      if (!pub.connected || !sub.connected) dropped = true;
    }, 20);
    const end = Date.now() + 10_000; // more than three token lifetimes
    let n = 0;
    while (Date.now() < end) {
      const res = await pub.publish("acme/long/run", {
        id: rid(),
        kind: "application",
        epoch: 0,
        payload: payload(),
      });
      assert.ok(res.ok);
      n++;
      await new Promise((res) => setTimeout(res, 100));
    }
    clearInterval(watch);
    await eventually(() => got.length === n, 10_000, `${n} deliveries`);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(dropped, false, "a connection dropped");
    assert.ok(issued >= 3, `only ${issued} tokens asked for`);
  } finally {
    await pub.close();
    await sub.close();
    await r.close();
  }
});

test("POST /v1/tokens: 500 wrong keys from one address get 429 after 10, logged without the key and counted in /metrics", async () => {
  const dir = await tempDir();
  const { key } = await createKey(dir, "acme");
  const { proc, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
  ]);
  try {
    const wrong = Array.from({ length: 500 }, (_, i) => `sk_live_${String(i).padStart(43, "W")}`);
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    const t0 = Date.now();
    for (let i = 0; i < wrong.length; i += 50) {
      const batch = await Promise.all(
        wrong.slice(i, i + 50).map(async (k) => {
          const res = await fetch(`http://127.0.0.1:${port}/v1/tokens`, {
            method: "POST",
            headers: { authorization: `Bearer ${k}` },
          });
          if (res.status === 429) retryAfter = res.headers.get("retry-after");
          await res.body?.cancel();
          return res.status;
        }),
      );
      statuses.push(...batch);
    }
    const ms = Date.now() - t0;
    const count = (s: number) => statuses.filter((x) => x === s).length;
    assert.equal(count(401), 10, `statuses: ${count(401)} × 401, ${count(429)} × 429`);
    assert.equal(count(429), 490);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 60, `Retry-After ${retryAfter}`);
    // The right key from that address waits for the window too.
    const right = await postToken(port, `Bearer ${key}`);
    assert.equal(right.status, 429);
    assert.equal((right.body.error as { reason: string }).reason, "too_many_failures");
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^skytale_token_failures_total 10$/m);
    assert.match(metrics, /^skytale_token_throttled_total 491$/m);
    const lines = proc.stderr().trim().split("\n").map((l) => JSON.parse(l));
    const refused = lines.filter((l) => l.msg === "token request refused");
    assert.equal(refused.length, 10);
    assert.ok(refused.every((l) => l.reason === "invalid_key" && l.remote !== undefined));
    assert.ok(refused.at(-1).throttled_for_seconds === 60);
    assert.ok(!proc.stderr().includes("WWWW"), "a presented key reached the log");
    // Figure for docs/RELIABILITY.md.
    process.stderr.write(`500 wrong keys answered in ${ms} ms: 10 × 401, 490 × 429\n`);
  } finally {
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("POST /v1/tokens: the throttle ends with its window (--token-max-failures, --token-failure-window)", async () => {
  const dir = await tempDir();
  const { key } = await createKey(dir, "acme");
  const { proc, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
    "--token-max-failures",
    "2",
    "--token-failure-window",
    "2s",
  ]);
  try {
    assert.equal((await postToken(port, "Bearer sk_live_" + "A".repeat(43))).status, 401);
    assert.equal((await postToken(port)).status, 401);
    const held = await postToken(port, `Bearer ${key}`);
    assert.equal(held.status, 429);
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal((await postToken(port, `Bearer ${key}`)).status, 200);
  } finally {
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a validly signed token whose org is not its API key's org is refused at hello", async () => {
  const dir = await tempDir();
  const { key, id } = await createKey(dir, "acme");
  const { proc, url, port } = await startRelayProcess([
    "--auth",
    "--data-dir",
    dir,
    "--store",
    "memory",
  ]);
  try {
    assert.equal((await postToken(port, `Bearer ${key}`)).status, 200);
    // Whoever holds the signing key (a leaked file, a buggy issuer) signs acme's key id into globex.
    const jwk = JSON.parse(await fsp.readFile(path.join(dir, "signing-key.jwk"), "utf8"));
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ org: "globex" })
      .setProtectedHeader({ alg: "EdDSA", kid: jwk.kid, typ: "JWT" })
      .setIssuer("skytale-relay")
      .setSubject(id)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .setJti("feedface")
      .sign(await importJWK(jwk, "EdDSA"));
    const c = client(url, { token: () => Promise.resolve(forged) });
    try {
      await assert.rejects(c.create("globex/a/b"), {
        code: "auth",
        message: /org "globex" is not the org of its API key/,
      });
    } finally {
      await c.close();
    }
  } finally {
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
