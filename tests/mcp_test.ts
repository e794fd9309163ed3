// The MCP server end to end: real server processes (under the runtime running this test)
// driven by the MCP SDK Client over stdio, talking through the embedded local relay.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import process from "node:process";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";
import { eventually, freePort, ROOT, runtimeCommand, spawnScript, tempDir } from "./_helpers.ts";

const CHANNEL = "acme/collab/analysis";
const open: Agent[] = [];
after(async () => {
  await Promise.all(open.map((a) => a.close()));
});

/** The environment of a server: ours minus any Skytale settings, plus `extra`. */
function serverEnv(extra: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("SKYTALE_")) out[k] = v;
  }
  return { ...out, ...extra };
}

interface ToolAnswer {
  text: string;
  isError: boolean;
  structured: Record<string, unknown>;
}

const homes = new Map<number, string>();

/** One MCP server process and the client driving it. */
class Agent {
  readonly identity: string;
  readonly client: Client;
  readonly transport: StdioClientTransport;
  #log = "";
  #closed = false;
  constructor(identity: string, client: Client, transport: StdioClientTransport) {
    this.identity = identity;
    this.client = client;
    this.transport = transport;
    transport.stderr?.on("data", (d: unknown) => {
      this.#log += String(d);
      if (process.env.SKYTALE_TEST_VERBOSE) process.stderr.write(`[${identity}] ${d}`);
    });
  }

  static async start(identity: string, dataDir: string, port: number): Promise<Agent> {
    const [cmd, pre] = runtimeCommand();
    // One SKYTALE_HOME per local relay port: its log and local.key, shared by the agents on it.
    let home = homes.get(port);
    if (home === undefined) homes.set(port, home = await tempDir("skytale-mcp-home-"));
    const transport = new StdioClientTransport({
      command: cmd,
      args: [...pre, path.join(ROOT, "mod.ts")],
      cwd: ROOT,
      env: serverEnv({
        SKYTALE_IDENTITY: identity,
        SKYTALE_DATA_DIR: dataDir,
        SKYTALE_HOME: home,
        SKYTALE_LOCAL_PORT: String(port),
      }),
      stderr: "pipe",
    });
    const client = new Client({ name: "skytale-test", version: "0.0.0" });
    const agent = new Agent(identity, client, transport);
    open.push(agent);
    await client.connect(transport);
    return agent;
  }

  get stderr(): string {
    return this.#log;
  }

  async call(name: string, args: Record<string, unknown> = {}): Promise<ToolAnswer> {
    const r = await this.client.callTool({ name, arguments: args }, undefined, { timeout: 90_000 });
    const content = r.content as { type: string; text?: string }[];
    return {
      text: content.map((c) => c.text ?? "").join("\n"),
      isError: r.isError === true,
      structured: (r.structuredContent ?? {}) as Record<string, unknown>,
    };
  }

  /** Calls a tool that must succeed. */
  async ok(name: string, args: Record<string, unknown> = {}): Promise<ToolAnswer> {
    const r = await this.call(name, args);
    assert.equal(r.isError, false, `${this.identity}: ${name} failed: ${r.text}\n${this.#log}`);
    return r;
  }

  /** Receives until `n` messages arrived (bounded). */
  async receiveN(channel: string, n: number): Promise<{ sender: string; text: string }[]> {
    const got: { sender: string; text: string }[] = [];
    await eventually(
      async () => {
        const r = await this.ok("skytale_receive", { channel, timeout: 5 });
        got.push(...(r.structured.messages as { sender: string; text: string }[]));
        return got.length >= n;
      },
      60_000,
      `${n} messages on ${channel} at ${this.identity}`,
    );
    return got;
  }

  /** Closes stdin (the server shuts down) and waits until the process is gone. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pid = this.transport.pid;
    await this.client.close();
    if (pid !== null) {
      await eventually(
        () => {
          try {
            process.kill(pid, 0);
            return false;
          } catch {
            return true;
          }
        },
        15_000,
        `${this.identity}'s server to exit`,
      );
    }
  }
}

async function pair(): Promise<{ alice: Agent; bob: Agent; port: number; dirs: string[] }> {
  const port = await freePort();
  const dirs = [await tempDir("skytale-mcp-alice-"), await tempDir("skytale-mcp-bob-")];
  const alice = await Agent.start("alice", dirs[0]!, port);
  // alice's first tool call connects, and hosts the embedded relay
  await alice.ok("skytale_channels");
  const bob = await Agent.start("bob", dirs[1]!, port);
  return { alice, bob, port, dirs };
}

test("two stdio servers share a channel through key package, add member and join", async () => {
  const { alice, bob } = await pair();
  const tools = await alice.client.listTools();
  assert.equal(tools.tools.length, 19);

  const created = await alice.ok("skytale_create_channel", { channel: CHANNEL });
  assert.match(created.text, /Created channel "acme\/collab\/analysis"/);
  const kp = await bob.ok("skytale_key_package");
  const keyPackage = kp.structured.key_package_hex as string;
  assert.match(keyPackage, /^[0-9a-f]+$/);
  assert.ok(kp.text.includes(keyPackage));

  const added = await alice.ok("skytale_add_member", {
    channel: CHANNEL,
    key_package_hex: keyPackage,
  });
  assert.deepEqual(added.structured.added, ["bob"]);
  const joined = await bob.ok("skytale_join_channel", {
    channel: CHANNEL,
    welcome_hex: added.structured.welcome_hex,
  });
  assert.deepEqual([...(joined.structured.members as string[])].sort(), ["alice", "bob"]);

  const sent = await alice.ok("skytale_send", { channel: CHANNEL, message: "analysis complete" });
  assert.match(sent.text, /Sent to "acme\/collab\/analysis" \(seq \d+\)/);
  const got = await bob.receiveN(CHANNEL, 1);
  assert.deepEqual(got.map((m) => [m.sender, m.text]), [["alice", "analysis complete"]]);

  const listed = await bob.ok("skytale_channels");
  assert.match(listed.text, /acme\/collab\/analysis \(epoch \d+; members: .*alice.*\)/);
  const members = await alice.ok("skytale_members", { channel: CHANNEL });
  assert.deepEqual([...(members.structured.members as string[])].sort(), ["alice", "bob"]);

  const empty = await bob.ok("skytale_receive", { channel: CHANNEL, timeout: 0 });
  assert.deepEqual(empty.structured.messages, []);
  assert.match(empty.text, /No new messages/);
  await Promise.all([bob.close(), alice.close()]);
});

test("an invite token admits the other agent with no hex copied, then messages flow both ways", async () => {
  const { alice, bob } = await pair();
  await alice.ok("skytale_create_channel", { channel: CHANNEL });
  const inv = await alice.ok("skytale_invite", { channel: CHANNEL });
  const token = inv.structured.token as string;
  assert.match(token, /^skt_inv_/);

  const joined = await bob.ok("skytale_join_with_token", { channel: CHANNEL, token });
  assert.deepEqual([...(joined.structured.members as string[])].sort(), ["alice", "bob"]);

  await alice.ok("skytale_send", { channel: CHANNEL, message: "hello bob" });
  assert.deepEqual((await bob.receiveN(CHANNEL, 1)).map((m) => [m.sender, m.text]), [
    ["alice", "hello bob"],
  ]);
  await bob.ok("skytale_send", { channel: CHANNEL, message: "hello alice" });
  assert.deepEqual((await alice.receiveN(CHANNEL, 1)).map((m) => [m.sender, m.text]), [
    ["bob", "hello alice"],
  ]);

  const removed = await alice.ok("skytale_remove_member", { channel: CHANNEL, identity: "bob" });
  assert.deepEqual(removed.structured.members, ["alice"]);
  await Promise.all([bob.close(), alice.close()]);
});

test("a restarted server lists the same channels and delivers what arrived while it was down", async () => {
  const { alice, bob, port, dirs } = await pair();
  await alice.ok("skytale_create_channel", { channel: CHANNEL });
  const kp = await bob.ok("skytale_key_package");
  const added = await alice.ok("skytale_add_member", {
    channel: CHANNEL,
    key_package_hex: kp.structured.key_package_hex,
  });
  await bob.ok("skytale_join_channel", {
    channel: CHANNEL,
    welcome_hex: added.structured.welcome_hex,
  });
  const before = (await bob.ok("skytale_channels")).structured.channels;

  await bob.close();
  assert.match(bob.stderr, /stopped/);
  await alice.ok("skytale_send", { channel: CHANNEL, message: "while you were away" });
  await alice.ok("skytale_send", { channel: CHANNEL, message: "and one more" });

  const bob2 = await Agent.start("bob", dirs[1]!, port);
  assert.deepEqual((await bob2.ok("skytale_channels")).structured.channels, before);
  const got = await bob2.receiveN(CHANNEL, 2);
  assert.deepEqual(got.map((m) => [m.sender, m.text]), [
    ["alice", "while you were away"],
    ["alice", "and one more"],
  ]);
  await Promise.all([bob2.close(), alice.close()]);
});

test("bad calls answer isError with a sentence saying what to fix", async () => {
  const port = await freePort();
  const alice = await Agent.start("alice", await tempDir("skytale-mcp-bad-"), port);
  await alice.ok("skytale_create_channel", { channel: CHANNEL });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["skytale_create_channel", { channel: "not-a-channel" }, /org\/namespace\/service/],
    ["skytale_create_channel", {}, /channel is required/],
    ["skytale_create_channel", { channel: CHANNEL }, /already exists.*skytale_channels/s],
    ["skytale_send", { channel: "acme/none/here", message: "x" }, /skytale_channels/],
    ["skytale_send", { channel: CHANNEL, message: "" }, /message is empty/],
    ["skytale_receive", { channel: CHANNEL, timeout: 500 }, /at most 50 seconds/],
    ["skytale_receive", { channel: CHANNEL, timeout: "soon" }, /number of seconds/],
    ["skytale_add_member", { channel: CHANNEL, key_package_hex: "xyz" }, /hex digits only/],
    ["skytale_add_member", { channel: CHANNEL, key_package_hex: "00ff00ff" }, /key package/i],
    ["skytale_join_channel", { channel: "acme/other/room", welcome_hex: "abcd" }, /Welcome/],
    ["skytale_join_with_token", { channel: CHANNEL, token: "nope" }, /skt_inv_/],
    ["skytale_remove_member", { channel: CHANNEL, identity: "mallory" }, /skytale_members/],
    ["skytale_members", { channel: "acme/none/here" }, /skytale_channels/],
  ];
  for (const [tool, args, want] of cases) {
    const r = await alice.call(tool, args);
    assert.equal(r.isError, true, `${tool}(${JSON.stringify(args)}) should fail: ${r.text}`);
    assert.match(r.text, want, `${tool}(${JSON.stringify(args)})`);
  }
  // the channel survived all of that
  const listed = await alice.ok("skytale_channels");
  assert.deepEqual(
    (listed.structured.channels as { channel: string }[]).map((c) => c.channel),
    [CHANNEL],
  );
  await alice.close();
});

test("the stdio server writes only JSON-RPC to stdout and stops cleanly on SIGTERM", async () => {
  const port = await freePort();
  const proc = spawnScript("mod.ts", [], {
    SKYTALE_IDENTITY: "carol",
    SKYTALE_DATA_DIR: await tempDir("skytale-mcp-sig-"),
    SKYTALE_HOME: await tempDir("skytale-mcp-sig-home-"),
    SKYTALE_LOCAL_PORT: String(port),
    SKYTALE_RELAY: "",
  });
  await proc.waitFor(/serving MCP on stdio/);
  const init = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "raw", version: "0" },
    },
  };
  proc.child.stdin!.write(JSON.stringify(init) + "\n");
  proc.child.stdin!.write(
    JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) + "\n",
  );
  proc.child.stdin!.write(
    JSON.stringify({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "skytale_channels", arguments: {} },
    }) + "\n",
  );
  await eventually(() => proc.stdout().split("\n").filter(Boolean).length >= 2, 30_000, "answers");
  for (const line of proc.stdout().split("\n").filter(Boolean)) {
    assert.equal(JSON.parse(line).jsonrpc, "2.0", `not JSON-RPC on stdout: ${line}`);
  }
  proc.child.kill("SIGTERM");
  const code = await proc.exited;
  await eventually(() => /stopped/.test(proc.stderr()), 15_000, "the server to stop");
  if ("Deno" in globalThis) {
    // Deno's node:child_process reports a child it signalled as killed (code null) and
    // closes the child's stdin, whichever of the two the child noticed first
    assert.match(proc.stderr(), /shutting down \((SIGTERM|stdin closed)\)[\s\S]*stopped/);
  } else {
    assert.equal(code, 0, proc.stderr());
    assert.match(proc.stderr(), /shutting down \(SIGTERM\)[\s\S]*stopped/);
  }
});

test("requests written before stdin closes are all answered before the stdio server stops", async () => {
  const port = await freePort();
  const proc = spawnScript("mod.ts", [], {
    SKYTALE_IDENTITY: "dave",
    SKYTALE_DATA_DIR: await tempDir("skytale-mcp-pipe-"),
    SKYTALE_HOME: await tempDir("skytale-mcp-pipe-home-"),
    SKYTALE_LOCAL_PORT: String(port),
    SKYTALE_RELAY: "",
  });
  await proc.waitFor(/serving MCP on stdio/);
  const lines = [
    {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "pipe", version: "0" },
      },
    },
    { jsonrpc: "2.0", method: "notifications/initialized" },
    {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "skytale_create_channel", arguments: { channel: "acme/pipe/room" } },
    },
    {
      jsonrpc: "2.0",
      id: 3,
      method: "tools/call",
      params: { name: "skytale_whoami", arguments: {} },
    },
  ];
  // A script piped into the server: everything written, then stdin closed at once.
  proc.child.stdin!.end(lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  await proc.exited;
  const answers = proc.stdout().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const byId = new Map(answers.map((a) => [a.id, a]));
  assert.ok(
    byId.get(2)?.result,
    `no answer to the create call: ${proc.stdout()}\n${proc.stderr()}`,
  );
  assert.match(byId.get(2).result.content[0].text, /Created channel "acme\/pipe\/room"/);
  assert.match(byId.get(3)?.result?.content[0]?.text ?? "", /did:key:z6Mk/);
  assert.match(proc.stderr(), /stopped/);
});
