// The embedded local relay (DESIGN invariant 7): nothing started by hand, a
// surviving process takes over the log when the hosting one dies, and the
// relay is the user's alone: its log and local.key live in SKYTALE_HOME, both
// ends of a connection prove they hold that key, files are owner-only.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { Agent, type AgentError } from "./_agent.ts";
import { freePort, relayClient, startRelayProcess, tempDir } from "./_helpers.ts";
import { AuthError, RelayError } from "../src/errors.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { startRelay } from "../src/relay/server.ts";
import { errorResult } from "../src/mcp/tools.ts";

const agents: Agent[] = [];
after(async () => {
  await Promise.all(agents.map((a) => a.kill()));
});

async function start(identity: string, env: Record<string, string>): Promise<Agent> {
  const a = await Agent.start(identity, env);
  agents.push(a);
  return a;
}

/** Every file and directory under `dir` whose mode is not owner-only, with its mode. */
async function loose(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const st = await fsp.stat(d);
    if ((st.mode & 0o777) !== 0o700) out.push(`${d} ${(st.mode & 0o777).toString(8)}`);
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const m = (await fsp.stat(p)).mode & 0o777;
        if (m !== 0o600) out.push(`${p} ${m.toString(8)}`);
      }
    }
  };
  await walk(dir);
  return out;
}

test("two processes talk through the embedded relay, and a survivor takes over its log", async () => {
  const port = String(await freePort());
  const home = await tempDir();
  const env = { SKYTALE_LOCAL_PORT: port, SKYTALE_HOME: home, SKYTALE_RELAY: "" };
  const ch = "acme/local/relay";
  let alice = await start("alice", env);
  await alice.call("create", ch);
  const bob = await start("bob", env);
  const welcome = await alice.call<string>("addMember", ch, await bob.call<string>("keyPackage"));
  await bob.call("join", ch, welcome);
  await alice.call("send", ch, "hello over the embedded relay");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => [m.sender, m.text]), [
    ["alice", "hello over the embedded relay"],
  ]);
  assert.match(alice.proc.stderr() + bob.proc.stderr(), /hosting/i);

  // Kill whichever process hosts the relay; the other must take over the same log.
  await alice.kill();
  await bob.call("send", ch, "while alice is down");
  alice = await start("alice", env);
  assert.deepEqual((await alice.receiveN(ch, 1)).map((m) => [m.sender, m.text]), [
    ["bob", "while alice is down"],
  ]);
  await alice.call("send", ch, "back again");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["back again"]);
  await Promise.all([alice.stop(), bob.stop()]);
});

test("agents with different data dirs share the one local relay of SKYTALE_HOME", async () => {
  const port = String(await freePort());
  const home = await tempDir();
  const base = { SKYTALE_LOCAL_PORT: port, SKYTALE_HOME: home, SKYTALE_RELAY: "" };
  const ch = "acme/local/shared";
  const alice = await start("alice", { ...base, SKYTALE_DATA_DIR: await tempDir() });
  await alice.call("create", ch);
  const bob = await start("bob", { ...base, SKYTALE_DATA_DIR: await tempDir() });
  const welcome = await alice.call<string>("addMember", ch, await bob.call<string>("keyPackage"));
  await alice.call("send", ch, "before I go");
  // Alice hosted the relay; it goes with her. Bob hosts it next, over the same log.
  await alice.stop();
  await bob.call("join", ch, welcome);
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => [m.sender, m.text]), [
    ["alice", "before I go"],
  ]);
  await fsp.access(path.join(home, "relay", "relay.db"));
  await bob.stop();
});

test("the embedded relay refuses a client that does not hold the user's local.key", async () => {
  const port = await freePort();
  const home = await tempDir();
  const env = { SKYTALE_LOCAL_PORT: String(port), SKYTALE_HOME: home, SKYTALE_RELAY: "" };
  const alice = await start("alice", env);
  await alice.call("create", "acme/local/private");
  // Another user's process, or a web page's script: it can reach the port, not the key.
  const stranger = relayClient(`ws://127.0.0.1:${port}`);
  try {
    await assert.rejects(stranger.create("acme/local/intruder"), AuthError);
  } finally {
    await stranger.close();
  }
  // One that knows the handshake but not the key: its answer does not verify.
  const forger = relayClient(`ws://127.0.0.1:${port}`, {
    greet: async (hello) => {
      const c = crypto.getRandomValues(new Uint8Array(16)).toHex();
      await hello(`skytale-local-v1.${c}`);
      return await hello(`skytale-local-v1.${c}.${"00".repeat(32)}`);
    },
  });
  try {
    await assert.rejects(forger.create("acme/local/intruder"), AuthError);
  } finally {
    await forger.close();
  }
  const key = await fsp.stat(path.join(home, "local.key"));
  assert.equal(key.size, 32);
  assert.equal(key.mode & 0o777, 0o600);
  // The relay still serves its user.
  await alice.call("send", "acme/local/private", "still here");
  await alice.stop();
});

test("a process squatting the local port is detected and refused, naming the port", async () => {
  const home = await tempDir();
  const plain = new MemoryLog();
  // A relay that does not know the user's secret, one that fakes the handshake.
  const squatters = [
    await startRelay({ hostname: "127.0.0.1", port: 0, log: plain }),
    await startRelay({
      hostname: "127.0.0.1",
      port: 0,
      log: new MemoryLog(),
      authenticate: (token) =>
        Promise.resolve(
          token?.split(".").length === 2
            ? { incomplete: true, proof: crypto.getRandomValues(new Uint8Array(32)) }
            : {},
        ),
    }),
  ];
  try {
    for (const squatter of squatters) {
      const env = {
        SKYTALE_LOCAL_PORT: String(squatter.port),
        SKYTALE_HOME: home,
        SKYTALE_DATA_DIR: await tempDir(),
        SKYTALE_RELAY: "",
      };
      const alice = await start("alice", env);
      await assert.rejects(alice.call("create", "acme/local/squat"), (e: AgentError) => {
        assert.equal(e.code, "auth");
        assert.ok(e.message.includes(`127.0.0.1:${squatter.port}`), e.message);
        assert.match(e.message, /not this user's local Skytale relay/);
        assert.match(e.message, /SKYTALE_LOCAL_PORT/);
        return true;
      });
      await alice.stop();
    }
    assert.equal(await plain.info("acme/local/squat"), undefined);
  } finally {
    await Promise.all(squatters.map((s) => s.close()));
  }
});

test("relay and agent files are 0600 and directories 0700, whatever existed before", async () => {
  const home = await tempDir();
  const dataDir = path.join(home, "agents");
  await fsp.mkdir(path.join(home, "relay"), { recursive: true });
  await fsp.mkdir(path.join(dataDir, "alice", "blobs"), { recursive: true });
  for (const d of [home, path.join(home, "relay"), dataDir, path.join(dataDir, "alice")]) {
    await fsp.chmod(d, 0o755);
  }
  await fsp.chmod(path.join(dataDir, "alice", "blobs"), 0o755);
  for (const f of ["relay/relay.db", "relay/relay.db-wal", "agents/alice/notes.txt"]) {
    await fsp.writeFile(path.join(home, f), "");
    await fsp.chmod(path.join(home, f), 0o644);
  }
  const alice = await start("alice", {
    SKYTALE_LOCAL_PORT: String(await freePort()),
    SKYTALE_HOME: home,
    SKYTALE_DATA_DIR: dataDir,
    SKYTALE_RELAY: "",
  });
  await alice.call("create", "acme/local/modes");
  await alice.call("send", "acme/local/modes", "written");
  assert.deepEqual(await loose(home), []);
  await alice.stop();

  // A team relay with API keys, on a data dir left 0755 with 0644 databases.
  const dir = await tempDir();
  await fsp.chmod(dir, 0o755);
  for (const f of ["relay.db", "auth.db"]) {
    await fsp.writeFile(path.join(dir, f), "");
    await fsp.chmod(path.join(dir, f), 0o644);
  }
  const relay = await startRelayProcess(["--data-dir", dir, "--auth"]);
  try {
    assert.deepEqual(await loose(dir), []);
  } finally {
    await relay.proc.kill();
  }
});

test("joining from a relay that lacks the channel names that relay and keeps the Welcome usable", async () => {
  const port = String(await freePort());
  const homeA = await tempDir();
  const homeB = await tempDir();
  const bobData = await tempDir();
  const ch = "acme/local/elsewhere";
  const alice = await start("alice", {
    SKYTALE_LOCAL_PORT: port,
    SKYTALE_HOME: homeA,
    SKYTALE_RELAY: "",
  });
  await alice.call("create", ch);
  const bobEnv = { SKYTALE_LOCAL_PORT: port, SKYTALE_DATA_DIR: bobData, SKYTALE_RELAY: "" };
  let bob = await start("bob", { ...bobEnv, SKYTALE_HOME: homeB });
  const welcome = await alice.call<string>("addMember", ch, await bob.call<string>("keyPackage"));
  await alice.call("send", ch, "on A's relay");
  await alice.stop();
  // Bob's SKYTALE_HOME is another one: he hosts a relay that never saw the channel.
  await assert.rejects(bob.call("join", ch, welcome), (e: AgentError) => {
    assert.equal(e.code, "wrong_relay");
    assert.ok(e.message.includes(`ws://127.0.0.1:${port}`), e.message);
    assert.match(e.message, /created on another relay/);
    assert.match(e.message, /SKYTALE_HOME/);
    return true;
  });
  assert.deepEqual(await bob.call("channels"), []);
  await bob.stop();
  // The MCP tool's advice points at the relay setting, not at skytale_channels.
  const result = errorResult(
    "skytale_join_channel",
    new RelayError("wrong_relay", "The relay has no channel"),
  );
  const text = (result.content[0] as { text: string }).text;
  assert.match(text, /SKYTALE_RELAY/);
  assert.doesNotMatch(text, /Call skytale_channels/);
  // With the right SKYTALE_HOME, the same Welcome joins.
  bob = await start("bob", { ...bobEnv, SKYTALE_HOME: homeA });
  await bob.call("join", ch, welcome);
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["on A's relay"]);
  await bob.stop();
});
