// Waiting, pushing and the rest of the MCP surface, end to end: a relay process and
// two stdio MCP server processes (under the runtime running this test), each driven
// by an MCP SDK Client. Resources and subscriptions, progress and cancellation of
// waits, skytale_wait, prompts, completions, logging, and Claude Code channel pushes.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import process from "node:process";
import { Client, StdioClientTransport } from "../src/mcp/_sdk.ts";
import {
  eventually,
  type Proc,
  ROOT,
  runtimeCommand,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";

const CH = "acme/push/main";
const CH2 = "acme/push/side";
const clients: Agent[] = [];
const procs: Proc[] = [];
after(async () => {
  await Promise.all(clients.map((a) => a.close()));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

interface Note {
  method: string;
  params: Record<string, unknown>;
  at: number;
}

function serverEnv(extra: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("SKYTALE_")) out[k] = v;
  }
  return { ...out, ...extra };
}

class Agent {
  readonly notes: Note[] = [];
  log = "";
  readonly identity: string;
  readonly client: Client;
  readonly transport: StdioClientTransport;
  constructor(identity: string, client: Client, transport: StdioClientTransport) {
    this.identity = identity;
    this.client = client;
    this.transport = transport;
    transport.stderr?.on("data", (d: unknown) => {
      this.log += String(d);
      if (process.env.SKYTALE_TEST_VERBOSE) process.stderr.write(`[${identity}] ${d}`);
    });
    client.fallbackNotificationHandler = (n) => {
      this.notes.push({
        method: n.method,
        params: (n.params ?? {}) as Record<string, unknown>,
        at: Date.now(),
      });
      return Promise.resolve();
    };
  }

  static async start(
    identity: string,
    relay: string,
    dataDir: string,
    args: string[] = [],
  ): Promise<Agent> {
    const [cmd, pre] = runtimeCommand();
    const transport = new StdioClientTransport({
      command: cmd,
      args: [...pre, path.join(ROOT, "mod.ts"), "mcp", ...args],
      cwd: ROOT,
      env: serverEnv({
        SKYTALE_IDENTITY: identity,
        SKYTALE_DATA_DIR: dataDir,
        SKYTALE_RELAY: relay,
      }),
      stderr: "pipe",
    });
    const client = new Client({ name: "push-test", version: "0.0.0" });
    const a = new Agent(identity, client, transport);
    clients.push(a);
    await client.connect(transport);
    return a;
  }

  notesOf(method: string): Note[] {
    return this.notes.filter((n) => n.method === method);
  }

  async ok(name: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const r = await this.client.callTool({ name, arguments: args }, undefined, { timeout: 90_000 });
    const text = (r.content as { text?: string }[]).map((c) => c.text ?? "").join("\n");
    assert.notEqual(r.isError, true, `${this.identity}: ${name} failed: ${text}\n${this.log}`);
    return { ...(r.structuredContent ?? {}), text };
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => {});
  }
}

type Msg = { sender: string; sender_id: string; seq: number; text: string };

let relayUrl = "";
let bobDir = "";

/** A fresh relay process, and alice and bob (no push) on it. */
async function world(): Promise<{ alice: Agent; bob: Agent }> {
  const r = await startRelayProcess(["--data-dir", await tempDir("skytale-push-relay-")]);
  procs.push(r.proc);
  relayUrl = r.url;
  bobDir = await tempDir("skytale-push-bob-");
  const alice = await Agent.start("alice", relayUrl, await tempDir("skytale-push-alice-"));
  const bob = await Agent.start("bob", relayUrl, bobDir);
  return { alice, bob };
}

test("channels are resources: list, read without consuming, subscribe, list_changed; waits return early, report progress, cancel", async () => {
  const { alice, bob } = await world();
  await alice.client.setLoggingLevel("info");
  await alice.ok("skytale_create_channel", { channel: CH });
  const { token } = await alice.ok("skytale_invite", { channel: CH });
  await bob.ok("skytale_join_with_token", { channel: CH, token });
  // the inviter's log line reached its client as a log notification
  await eventually(
    () =>
      alice.notesOf("notifications/message").some((n) =>
        /admitted "bob"/.test(String(n.params.data))
      ),
    10_000,
    "alice's log notification",
  );

  const listed = await bob.client.listResources();
  const res = listed.resources.find((r) => r.uri === `skytale://channel/${CH}`);
  assert.ok(res, JSON.stringify(listed));
  assert.equal(res.name, CH);
  assert.deepEqual([...(res._meta?.members as string[])].sort(), ["alice", "bob"]);
  assert.equal(typeof res._meta?.epoch, "number");
  const templates = await bob.client.listResourceTemplates();
  assert.ok(
    templates.resourceTemplates.some((t) => t.uriTemplate === "skytale://channel/{org}/{ns}/{svc}"),
  );
  const done = await bob.client.complete({
    ref: { type: "ref/resource", uri: "skytale://channel/{org}/{ns}/{svc}" },
    argument: { name: "svc", value: "ma" },
    context: { arguments: { org: "acme", ns: "push" } },
  });
  assert.deepEqual(done.completion.values, ["main"]);

  // subscribe: one update soon after alice's send, then read without consuming
  await bob.client.subscribeResource({ uri: `skytale://channel/${CH}` });
  const sentAt = Date.now();
  await alice.ok("skytale_send", { channel: CH, message: "hello resources" });
  await eventually(
    () => bob.notesOf("notifications/resources/updated").length > 0,
    10_000,
    "an update",
  );
  const update = bob.notesOf("notifications/resources/updated")[0]!;
  assert.equal(update.params.uri, `skytale://channel/${CH}`);
  // the bound is 500 ms; asserted with a generous margin for loaded CI machines
  assert.ok(update.at - sentAt < 2_000, `update after ${update.at - sentAt} ms`);
  for (let i = 0; i < 2; i++) {
    const read = await bob.client.readResource({ uri: `skytale://channel/${CH}` });
    const body = JSON.parse(String((read.contents[0] as { text: string }).text));
    assert.deepEqual(body.messages.map((m: Msg) => [m.sender, m.text]), [[
      "alice",
      "hello resources",
    ]]);
    assert.match(body.messages[0].sender_id, /^did:key:/);
  }
  const got = await bob.ok("skytale_receive", { channel: CH, timeout: 0 });
  assert.deepEqual((got.messages as Msg[]).map((m) => m.text), ["hello resources"]);
  assert.deepEqual((await bob.ok("skytale_receive", { channel: CH, timeout: 0 })).messages, []);

  // a waiting receive returns as soon as a message arrives
  const waiting = bob.ok("skytale_receive", { channel: CH, timeout: 30 });
  await new Promise((r) => setTimeout(r, 500));
  await alice.ok("skytale_send", { channel: CH, message: "quick" });
  const sent = Date.now();
  const quick = await waiting;
  assert.deepEqual((quick.messages as Msg[]).map((m) => m.text), ["quick"]);
  assert.ok(Date.now() - sent < 2_000, `receive answered ${Date.now() - sent} ms after the send`);

  // progress while waiting, when the client asks for it
  const ticks: number[] = [];
  await bob.client.callTool(
    { name: "skytale_receive", arguments: { channel: CH, timeout: 2.5 } },
    undefined,
    { onprogress: (p) => ticks.push(p.progress), timeout: 30_000 },
  );
  assert.ok(ticks.length >= 1, "progress notifications");

  // cancellation stops the wait: the message sent afterwards is still there for the next call
  const ac = new AbortController();
  const cancelled = bob.client.callTool(
    { name: "skytale_receive", arguments: { channel: CH, timeout: 30 } },
    undefined,
    { signal: ac.signal },
  );
  await new Promise((r) => setTimeout(r, 300));
  ac.abort("changed my mind");
  await assert.rejects(cancelled);
  await new Promise((r) => setTimeout(r, 300));
  await alice.ok("skytale_send", { channel: CH, message: "after cancel" });
  await eventually(
    async () =>
      ((await bob.ok("skytale_receive", { channel: CH, peek: true, timeout: 1 })).messages as Msg[])
        .length > 0,
    10_000,
  );
  const after = await bob.ok("skytale_receive", { channel: CH, timeout: 0 });
  assert.deepEqual((after.messages as Msg[]).map((m) => m.text), ["after cancel"]);

  // joining a second channel changes the list; skytale_wait names the channel with news
  const changed = bob.notesOf("notifications/resources/list_changed").length;
  await alice.ok("skytale_create_channel", { channel: CH2 });
  const inv2 = await alice.ok("skytale_invite", { channel: CH2 });
  await bob.ok("skytale_join_with_token", { channel: CH2, token: inv2.token });
  await eventually(
    () => bob.notesOf("notifications/resources/list_changed").length > changed,
    10_000,
  );
  const news = bob.ok("skytale_wait", { channels: [CH, CH2], timeout: 30 });
  await new Promise((r) => setTimeout(r, 300));
  await alice.ok("skytale_send", { channel: CH2, message: "over here" });
  const w = await news;
  assert.deepEqual(w.channels, [CH2]);
  assert.match(String(w.text), /acme\/push\/side/);

  // prompts, with channel names completed from this agent's channels
  const prompts = await bob.client.listPrompts();
  assert.deepEqual(prompts.prompts.map((p) => p.name).sort(), [
    "skytale_hand_off_work",
    "skytale_join_with_invite",
    "skytale_start_private_channel",
  ]);
  const c = await bob.client.complete({
    ref: { type: "ref/prompt", name: "skytale_hand_off_work" },
    argument: { name: "channel", value: "acme/push/s" },
  });
  assert.deepEqual(c.completion.values, [CH2]);
  const p = await bob.client.getPrompt({
    name: "skytale_hand_off_work",
    arguments: { channel: CH2, task: "sum it" },
  });
  assert.match(JSON.stringify(p.messages), /skytale_send\(channel=\\"acme\/push\/side\\"/);

  // a server started without --claude-channel declares nothing and pushes nothing
  assert.equal(bob.client.getServerCapabilities()?.experimental?.["claude/channel"], undefined);
  assert.equal(bob.notesOf("notifications/claude/channel").length, 0);
  await bob.close();
  await alice.close();
});

test("--claude-channel pushes each message once with its meta; a sender outside the allowlist is never pushed", async () => {
  const { alice, bob: plain } = await world();
  await alice.ok("skytale_create_channel", { channel: CH });
  const { token } = await alice.ok("skytale_invite", { channel: CH });
  await plain.ok("skytale_join_with_token", { channel: CH, token });
  await plain.close();

  const bob = await Agent.start("bob", relayUrl, bobDir, [
    "--claude-channel",
    "--claude-channel-allow",
    "alice",
  ]);
  assert.deepEqual(bob.client.getServerCapabilities()?.experimental?.["claude/channel"], {});
  const me = await alice.ok("skytale_whoami");
  const seqs: number[] = [];
  for (const m of ["first push", "second push"]) {
    seqs.push((await alice.ok("skytale_send", { channel: CH, message: m })).seq as number);
  }
  await eventually(
    () => bob.notesOf("notifications/claude/channel").length >= 2,
    20_000,
    "two pushes",
  );
  await new Promise((r) => setTimeout(r, 500));
  const pushes = bob.notesOf("notifications/claude/channel");
  assert.equal(pushes.length, 2);
  for (const [i, n] of pushes.entries()) {
    assert.deepEqual(n.params.meta, {
      channel: CH,
      sender: "alice",
      sender_id: me.did,
      seq: String(seqs[i]),
      time: (n.params.meta as { time: string }).time,
    });
    assert.match(String(n.params.content), /untrusted content from another agent/);
    assert.ok(String(n.params.content).endsWith(i === 0 ? "first push" : "second push"));
  }
  // pushed means handed out: skytale_receive does not return them again
  assert.deepEqual((await bob.ok("skytale_receive", { channel: CH, timeout: 0 })).messages, []);
  await bob.close();

  // allowlisted: carol only, so alice's message is never pushed and stays for skytale_receive
  const bob2 = await Agent.start("bob", relayUrl, bobDir, ["--claude-channel-allow", "carol"]);
  await alice.ok("skytale_send", { channel: CH, message: "not for the push" });
  await eventually(
    async () =>
      ((await bob2.ok("skytale_receive", { channel: CH, peek: true, timeout: 1 }))
        .messages as Msg[]).length > 0,
    20_000,
  );
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(bob2.notesOf("notifications/claude/channel").length, 0);
  const got = await bob2.ok("skytale_receive", { channel: CH, timeout: 0 });
  assert.deepEqual((got.messages as Msg[]).map((m) => m.text), ["not for the push"]);
  await bob2.close();
  await alice.close();
});

test("a channel's shared context is a resource: a handoff reaches its recipient as an update and in skytale_context_list", async () => {
  const { alice, bob } = await world();
  const ch = "acme/push/context";
  await alice.ok("skytale_create_channel", { channel: ch });
  const { token } = await alice.ok("skytale_invite", { channel: ch });
  await bob.ok("skytale_join_with_token", { channel: ch, token });
  const uri = `skytale://context/${ch}`;
  const templates = await bob.client.listResourceTemplates();
  assert.ok(
    templates.resourceTemplates.some((t) => t.uriTemplate === "skytale://context/{org}/{ns}/{svc}"),
  );
  await bob.client.subscribeResource({ uri });
  const before = bob.notesOf("notifications/resources/updated").length;
  await alice.ok("skytale_handoff", {
    channel: ch,
    to: "bob",
    task: "review the draft",
    tried: ["spell check"],
  });
  await eventually(
    () =>
      bob.notesOf("notifications/resources/updated").slice(before).some((n) =>
        n.params.uri === uri
      ),
    10_000,
    "a context update at bob",
  );
  const read = await bob.client.readResource({ uri });
  const body = JSON.parse(String((read.contents[0] as { text: string }).text));
  const handoff = (body.entries as { type: string; value: { task?: string } }[]).find((e) =>
    e.type === "handoff"
  );
  assert.equal(handoff?.value?.task, "review the draft", JSON.stringify(body));
  const listed = await bob.ok("skytale_context_list", { channel: ch, type: "handoff" });
  assert.match(String(listed.text), /review the draft/);
  await alice.close();
  await bob.close();
});
