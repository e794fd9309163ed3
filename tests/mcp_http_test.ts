// `skytale mcp --http` as a real process: the bearer token (generated and kept
// 0600, or given), 401 with a WWW-Authenticate challenge, exact Origins, the
// session cap and idle expiry, and --no-auth only on loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { Client, StreamableHTTPClientTransport } from "../src/mcp/_sdk.ts";
import {
  freePort,
  type Proc,
  reaping,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

const INIT = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "x", version: "0" },
  },
});
const HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

interface McpProc {
  proc: Proc;
  url: string;
  port: number;
  token: string | undefined;
}

/** Starts `mod.ts mcp --http 127.0.0.1:0 …args` with its data dir and relay. */
async function startMcp(
  args: string[],
  env: Record<string, string>,
): Promise<McpProc> {
  const proc = spawnScript("mod.ts", ["mcp", "--http", "127.0.0.1:0", ...args], {
    SKYTALE_IDENTITY: "http-agent",
    ...env,
  });
  const m = await proc.waitFor(/listening on (http:\/\/127\.0\.0\.1:(\d+)\/mcp)/);
  const t = /Authorization: Bearer (\S+)'/.exec(proc.stderr());
  return { proc, url: m[1]!, port: Number(m[2]), token: t?.[1] };
}

/** POSTs an initialize; answers the status, the session id and the body text. */
async function init(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; session: string | null; body: string; challenge: string | null }> {
  const res = await fetch(url, { method: "POST", headers: { ...HEADERS, ...headers }, body: INIT });
  const body = await res.text();
  return {
    status: res.status,
    session: res.headers.get("mcp-session-id"),
    body,
    challenge: res.headers.get("www-authenticate"),
  };
}

/** POSTs a ping in a session. */
async function ping(url: string, session: string, token: string): Promise<number> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      ...HEADERS,
      authorization: `Bearer ${token}`,
      "mcp-session-id": session,
      "mcp-protocol-version": "2025-06-18",
    },
    body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "ping" }),
  });
  await res.body?.cancel();
  return res.status;
}

test("mcp --http requires its bearer token: made 0600 on first start, kept, 401 with a challenge otherwise", async () => {
  await reaping(async () => {
    const root = await tempDir();
    const dataDir = path.join(root, "data");
    const relay = await startRelayProcess(["--store", "memory"]);
    const env = { SKYTALE_DATA_DIR: dataDir, SKYTALE_RELAY: relay.url };
    try {
      const a = await startMcp([], env);
      assert.match(a.token ?? "", /^skt_mcp_[0-9a-f]{64}$/, a.proc.stderr());
      const file = path.join(dataDir, "mcp-http.token");
      assert.equal((await fsp.readFile(file, "utf8")).trim(), a.token);
      assert.equal((await fsp.stat(file)).mode & 0o777, 0o600);
      assert.equal((await fsp.stat(dataDir)).mode & 0o777, 0o700);

      const none = await init(a.url);
      assert.equal(none.status, 401);
      assert.equal(none.challenge, 'Bearer realm="skytale"');
      assert.match(JSON.parse(none.body).error.message, /Authorization: Bearer <token>/);
      assert.equal(none.session, null);
      // The token with its last hex digit changed (to a digit it is not).
      const last = a.token!.slice(-1) === "0" ? "1" : "0";
      const wrong = await init(a.url, {
        authorization: `Bearer ${a.token!.slice(0, -1)}${last}`,
      });
      assert.equal(wrong.status, 401);
      assert.match(wrong.challenge ?? "", /^Bearer realm="skytale", error="invalid_token"/);
      const basic = await init(a.url, { authorization: `Basic ${btoa(`x:${a.token}`)}` });
      assert.equal(basic.status, 401);

      // The right token, as an MCP client passes it: a header in its request options.
      const client = new Client({ name: "c", version: "0" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(a.url), {
          requestInit: { headers: { authorization: `Bearer ${a.token}` } },
        }),
      );
      const r = await client.callTool({ name: "skytale_whoami", arguments: {} });
      assert.match(JSON.stringify(r.content), /http-agent/);
      await client.close();
      await a.proc.kill();

      // A restart keeps the token; SKYTALE_MCP_TOKEN and --token replace it.
      const b = await startMcp([], env);
      assert.equal(b.token, a.token);
      await b.proc.kill();
      const c = await startMcp([], { ...env, SKYTALE_MCP_TOKEN: "env-token-0123456789abcdef" });
      assert.equal(c.token, "env-token-0123456789abcdef");
      assert.equal((await init(c.url, { authorization: `Bearer ${a.token}` })).status, 401);
      assert.equal(
        (await init(c.url, { authorization: "Bearer env-token-0123456789abcdef" })).status,
        200,
      );
      await c.proc.kill();
    } finally {
      await relay.proc.kill();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

test("mcp --http accepts only its own exact origins: localhost on another port is refused", async () => {
  await reaping(async () => {
    const root = await tempDir();
    const relay = await startRelayProcess(["--store", "memory"]);
    try {
      const other = await freePort();
      const s = await startMcp(["--token", "origin-test-token-0123456789"], {
        SKYTALE_DATA_DIR: root,
        SKYTALE_RELAY: relay.url,
      });
      const auth = { authorization: "Bearer origin-test-token-0123456789" };
      for (const origin of [`http://localhost:${other}`, `http://127.0.0.1:${other}`, "null"]) {
        const r = await init(s.url, { ...auth, origin });
        assert.equal(r.status, 403, origin);
        assert.match(r.body, /Origin .* is not allowed/);
      }
      for (const origin of [`http://localhost:${s.port}`, `http://127.0.0.1:${s.port}`]) {
        assert.equal((await init(s.url, { ...auth, origin })).status, 200, origin);
      }
      await s.proc.kill();
      // --allow-origin adds one, exactly.
      const t = await startMcp([
        "--token",
        "origin-test-token-0123456789",
        "--allow-origin",
        `http://localhost:${other}`,
      ], { SKYTALE_DATA_DIR: root, SKYTALE_RELAY: relay.url });
      assert.equal(
        (await init(t.url, { ...auth, origin: `http://localhost:${other}` })).status,
        200,
      );
      assert.equal(
        (await init(t.url, { ...auth, origin: `http://localhost:${other + 1}` })).status,
        403,
      );
      await t.proc.kill();
    } finally {
      await relay.proc.kill();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

test("mcp --http caps sessions (--max-sessions) and forgets idle ones (--session-idle)", async () => {
  await reaping(async () => {
    const root = await tempDir();
    const relay = await startRelayProcess(["--store", "memory"]);
    const token = "session-test-token-0123456789";
    const auth = { authorization: `Bearer ${token}` };
    try {
      const s = await startMcp(
        ["--token", token, "--max-sessions", "2", "--session-idle", "2s"],
        { SKYTALE_DATA_DIR: root, SKYTALE_RELAY: relay.url },
      );
      const one = await init(s.url, auth);
      const two = await init(s.url, auth);
      assert.equal(one.status, 200);
      assert.equal(two.status, 200);
      const three = await init(s.url, auth);
      assert.equal(three.status, 503);
      assert.match(JSON.parse(three.body).error.message, /limit of 2 \(--max-sessions\)/);
      assert.equal(three.session, null);
      // Activity keeps a session; silence for 2 s ends it.
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(await ping(s.url, one.session!, token), 200);
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(await ping(s.url, two.session!, token), 404);
      assert.equal(await ping(s.url, one.session!, token), 200);
      await new Promise((r) => setTimeout(r, 2600));
      assert.equal(await ping(s.url, one.session!, token), 404);
      // The expired sessions no longer count against the cap.
      assert.equal((await init(s.url, auth)).status, 200);
      assert.equal((await init(s.url, auth)).status, 200);
      assert.equal((await init(s.url, auth)).status, 503);
      await s.proc.kill();
    } finally {
      await relay.proc.kill();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

test("mcp --http --no-auth serves loopback with a warning and is refused on other addresses", async () => {
  await reaping(async () => {
    const root = await tempDir();
    const relay = await startRelayProcess(["--store", "memory"]);
    const env = { SKYTALE_DATA_DIR: root, SKYTALE_RELAY: relay.url };
    try {
      const s = await startMcp(["--no-auth"], env);
      assert.match(s.proc.stderr(), /WARNING: --no-auth/);
      assert.equal(s.token, undefined);
      assert.equal((await init(s.url)).status, 200);
      await s.proc.kill();
      const wide = spawnScript("mod.ts", ["mcp", "--http", "0.0.0.0:0", "--no-auth"], env);
      assert.equal(await wide.exited, 2);
      assert.match(wide.stderr(), /without a token is refused on "0\.0\.0\.0"/);
      const short = spawnScript("mod.ts", ["mcp", "--http", "127.0.0.1:0", "--token", "abc"], env);
      assert.equal(await short.exited, 2);
      assert.match(short.stderr(), /at least 16 printable characters/);
    } finally {
      await relay.proc.kill();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
