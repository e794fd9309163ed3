// SkytaleChannelManager end to end: members in separate processes, a relay process.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import { Agent, type AgentError } from "./_agent.ts";
import { FileStore } from "../src/store/file.ts";
import { eventually, type Proc, startRelayProcess, tempDir } from "./_helpers.ts";

const procs: Proc[] = [];
const agents: Agent[] = [];
after(async () => {
  await Promise.all(agents.map((a) => a.kill()));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

async function relay(dataDir?: string, port?: number) {
  const dir = dataDir ?? await tempDir();
  const r = await startRelayProcess([
    "--data-dir",
    dir,
    ...(port ? ["--port", String(port)] : []),
  ]);
  procs.push(r.proc);
  return { ...r, dir };
}

async function agent(identity: string, url: string, dataDir?: string): Promise<Agent> {
  const a = await Agent.start(identity, {
    SKYTALE_RELAY: url,
    SKYTALE_DATA_DIR: dataDir ?? await tempDir(),
  });
  agents.push(a);
  return a;
}

async function addTo(owner: Agent, member: Agent, channel: string): Promise<void> {
  const kp = await member.call<string>("keyPackage");
  const welcome = await owner.call<string>("addMember", channel, kp);
  await member.call("join", channel, welcome);
}

test("two and three members in separate processes exchange messages through a relay process", async () => {
  const { url } = await relay();
  const ch = "acme/research/results";
  const alice = await agent("alice", url);
  const bob = await agent("bob", url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  await alice.call("send", ch, "analysis complete");
  const got = await bob.receiveN(ch, 1);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.sender, "alice");
  assert.equal(got[0]!.text, "analysis complete");
  assert.ok(got[0]!.seq > 0);
  assert.ok(!Number.isNaN(Date.parse(got[0]!.time)));

  await bob.call("send", ch, "before carol");
  assert.deepEqual((await alice.receiveN(ch, 1)).map((m) => [m.sender, m.text]), [
    ["bob", "before carol"],
  ]);

  const carol = await agent("carol", url);
  await addTo(bob, carol, ch);
  await alice.call("send", ch, "after carol");
  const carolGot = await carol.receiveN(ch, 1);
  assert.deepEqual(carolGot.map((m) => [m.sender, m.text]), [["alice", "after carol"]]);
  // Only what was sent after the join: nothing more arrives.
  assert.deepEqual(await carol.call("receive", ch, 0.5), []);
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["after carol"]);
  assert.deepEqual(
    new Set(await alice.call<string[]>("members", ch)),
    new Set(["alice", "bob", "carol"]),
  );

  await alice.call("removeMember", ch, "bob");
  await alice.call("send", ch, "secret after removal");
  assert.deepEqual((await carol.receiveN(ch, 1)).map((m) => m.text), ["secret after removal"]);
  assert.deepEqual(await bob.call("receive", ch, 1), []);
  const bobChannels = await bob.call<{ channel: string; active: boolean }[]>("channels");
  assert.equal(bobChannels[0]?.active, false);
  await assert.rejects(bob.call("send", ch, "still here?"), (e: AgentError) => {
    return e.code === "unknown_channel";
  });
  await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
});

test("two members committing at the same epoch: one is acked, the other catches up and retries", async () => {
  const { url } = await relay();
  const ch = "acme/race/commits";
  const alice = await agent("alice", url);
  const bob = await agent("bob", url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  await bob.call("send", ch, "sync");
  await alice.receiveN(ch, 1);
  const before = (await alice.call<{ epoch: number }[]>("channels"))[0]!.epoch;
  // Several rounds so the two commits really meet at one epoch: the loser logs its nack.
  let rounds = 0;
  const nacked = /was nacked/;
  while (rounds < 10 && !nacked.test(alice.proc.stderr() + bob.proc.stderr())) {
    await Promise.all([alice.call("rotateKeys", ch), bob.call("rotateKeys", ch)]);
    rounds++;
  }
  assert.match(alice.proc.stderr() + bob.proc.stderr(), nacked);
  await alice.call("send", ch, "after race");
  await bob.receiveN(ch, 1);
  const a = (await alice.call<{ epoch: number }[]>("channels"))[0]!.epoch;
  const b = (await bob.call<{ epoch: number }[]>("channels"))[0]!.epoch;
  assert.equal(a, before + 2 * rounds);
  assert.equal(b, a);
  assert.equal(await alice.call("exportSecret", ch), await bob.call("exportSecret", ch));
  await Promise.all([alice.stop(), bob.stop()]);
});

test("a member killed between keyPackage() and join(), or between messages, loses nothing", async () => {
  const { url } = await relay();
  const ch = "acme/crash/member";
  const bobDir = await tempDir();
  const alice = await agent("alice", url);
  let bob = await agent("bob", url, bobDir);
  await alice.call("create", ch);
  const kp = await bob.call<string>("keyPackage");
  await bob.kill();
  const welcome = await alice.call<string>("addMember", ch, kp);
  bob = await agent("bob", url, bobDir);
  await bob.call("join", ch, welcome);
  await alice.call("send", ch, "m0");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["m0"]);
  await alice.call("send", ch, "m1");
  // Wait until bob has it buffered (not yet received), then kill him.
  await new Promise((r) => setTimeout(r, 500));
  await bob.kill();
  await alice.call("sendMany", ch, "down", 5);
  bob = await agent("bob", url, bobDir);
  const got = await bob.receiveN(ch, 6);
  assert.deepEqual(got.map((m) => m.text), ["m1", "down0", "down1", "down2", "down3", "down4"]);
  assert.deepEqual(await bob.call("receive", ch, 0.5), []);
  await Promise.all([alice.stop(), bob.stop()]);
});

test("the relay restarted mid-stream (SQLite log): clients reconnect, nothing lost or duplicated", async () => {
  const r1 = await relay();
  const ch = "acme/crash/relay";
  const alice = await agent("alice", r1.url);
  const bob = await agent("bob", r1.url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  const sending = alice.call("sendMany", ch, "x", 40);
  await new Promise((res) => setTimeout(res, 300));
  await r1.proc.kill("SIGKILL");
  await new Promise((res) => setTimeout(res, 300));
  await relay(r1.dir, r1.port);
  await sending;
  const got = await bob.receiveN(ch, 40, 60_000);
  assert.deepEqual(got.map((m) => m.text), Array.from({ length: 40 }, (_, i) => `x${i}`));
  assert.deepEqual(await bob.call("receive", ch, 0.5), []);
  await Promise.all([alice.stop(), bob.stop()]);
});

test("the relay's SQLite file holds no plaintext marker", async () => {
  const r = await relay();
  const ch = "acme/privacy/marker";
  const alice = await agent("alice", r.url);
  const bob = await agent("bob", r.url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  const marker = "PLAINTEXT-MARKER-7f3a9c";
  await alice.call("send", ch, `${marker} one`);
  await bob.call("send", ch, `${marker} two`);
  await bob.receiveN(ch, 1);
  await alice.receiveN(ch, 1);
  await Promise.all([alice.stop(), bob.stop()]);
  await r.proc.kill("SIGTERM");
  let scanned = 0;
  for (const f of await fsp.readdir(r.dir, { recursive: true })) {
    const p = path.join(r.dir, String(f));
    if (!(await fsp.stat(p)).isFile()) continue;
    const bytes = await fsp.readFile(p);
    scanned += bytes.length;
    assert.equal(bytes.includes(Buffer.from(marker)), false, `${p} contains the marker`);
  }
  assert.ok(scanned > 0, "the relay wrote its log");
});

test("bad input gets a clear SkytaleError code and changes no stored state", async () => {
  const { url } = await relay();
  const ch = "acme/bad/input";
  const dir = await tempDir();
  const alice = await agent("alice", url, dir);
  const bob = await agent("bob", url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  const snapshot = async (dir: string) => {
    const out: Record<string, string> = {};
    for (const f of await fsp.readdir(dir, { recursive: true })) {
      const p = path.join(dir, String(f));
      if ((await fsp.stat(p)).isFile()) out[String(f)] = (await fsp.readFile(p)).toString("hex");
    }
    return out;
  };
  // Let alice finish processing bob's join: her files stop changing (bounded: 10 s).
  let before = await snapshot(dir);
  for (let still = 0, i = 0; still < 3 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await snapshot(dir);
    still = JSON.stringify(now) === JSON.stringify(before) ? still + 1 : 0;
    before = now;
  }
  const expectCode = async (p: Promise<unknown>, code: string, re?: RegExp) => {
    await assert.rejects(p, (e: AgentError) => {
      assert.equal(e.code, code, e.message);
      if (re) assert.match(e.message, re);
      return true;
    });
  };
  await expectCode(alice.call("addMember", ch, "zz-not-hex"), "invalid_hex", /Key package/);
  await expectCode(alice.call("addMember", ch, "00ff00ff"), "invalid_message");
  await expectCode(alice.call("join", "acme/other/x", "abc"), "invalid_hex", /Welcome/);
  await expectCode(
    alice.call("send", "acme/none/here", "hi"),
    "unknown_channel",
    /acme\/none\/here/,
  );
  await expectCode(
    alice.call("create", "not-a-channel"),
    "invalid_channel",
    /org\/namespace\/service/,
  );
  await expectCode(alice.call("send", ch, "x".repeat(2 * 1024 * 1024)), "too_large");
  await expectCode(alice.call("receive", ch, -1), "invalid_argument", /[Tt]imeout/);
  await expectCode(alice.call("removeMember", ch, "mallory"), "unknown_member", /mallory/);
  await expectCode(alice.call("create", ch), "channel_exists");
  assert.deepEqual(await snapshot(dir), before, "bad calls changed alice's stored state");
  // A Welcome made for someone else's key package.
  const carol = await agent("carol", url);
  const welcome = await bob.call<string>("addMember", ch, await carol.call<string>("keyPackage"));
  const daveDir = await tempDir();
  const dave = await agent("dave", url, daveDir);
  await dave.call("keyPackage");
  const daveBefore = await snapshot(daveDir);
  await expectCode(dave.call("join", ch, welcome), "welcome_mismatch");
  assert.deepEqual(await snapshot(daveDir), daveBefore, "a refused Welcome changed dave's state");
  await alice.call("send", ch, "still works");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["still works"]);
  await Promise.all([alice.stop(), bob.stop(), carol.stop(), dave.stop()]);
});

test("leave() is committed by a remaining member, even when another commit races its proposal", async () => {
  const { url } = await relay();
  const ch = "acme/leave/race";
  const alice = await agent("alice", url);
  const bob = await agent("bob", url);
  const carol = await agent("carol", url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  await addTo(alice, carol, ch);
  // Bob's proposal and Alice's rotation meet at one epoch; Bob must still end up removed.
  await Promise.all([bob.call("leave", ch), alice.call("rotateKeys", ch)]);
  const end = Date.now() + 20_000;
  let members: string[] = [];
  while (Date.now() < end) {
    members = await alice.call<string[]>("members", ch);
    if (!members.includes("bob")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(new Set(members), new Set(["alice", "carol"]));
  assert.deepEqual(await bob.call("channels"), []);
  await alice.call("send", ch, "after bob left");
  assert.deepEqual((await carol.receiveN(ch, 1)).map((m) => m.text), ["after bob left"]);
  await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
});

test("a second live process on the same identity and data dir is refused with in_use", async () => {
  const { url } = await relay();
  const dir = await tempDir();
  const first = await agent("alice", url, dir);
  await first.call("create", "acme/lock/one");
  const second = await agent("alice", url, dir);
  await assert.rejects(second.call("channels"), (e: AgentError) => {
    assert.equal(e.code, "in_use", e.message);
    assert.match(e.message, /in use by another running process \(pid \d+\)/);
    return true;
  });
  await second.stop();
  await first.stop();
  // Released on a clean stop; a lock left by a killed process is taken over.
  const third = await agent("alice", url, dir);
  assert.deepEqual((await third.call<{ channel: string }[]>("channels")).map((c) => c.channel), [
    "acme/lock/one",
  ]);
  await third.kill();
  const fourth = await agent("alice", url, dir);
  assert.equal((await fourth.call<unknown[]>("channels")).length, 1);
  await fourth.stop();
});

test("a member restarted before reading back its own messages skips them quietly and goes on", async () => {
  const { url } = await relay();
  const ch = "acme/restart/own";
  const dirA = await tempDir();
  let alice = await agent("alice", url, dirA);
  const bob = await agent("bob", url);
  await alice.call("create", ch);
  await addTo(alice, bob, ch);
  // Send a burst and SIGKILL alice at once, until her saved cursor is behind sends she made
  // (usually the first try): those come back to her after the restart, under ids she no longer
  // holds in memory.
  let behind = false;
  let sentCount = 0;
  for (let round = 0; round < 5 && !behind; round++) {
    sentCount += 20;
    const seqs = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => alice.call<{ seq: number }>("send", ch, `r${round}-${i}`),
      ),
    );
    await alice.kill();
    const [rec] = await new FileStore(path.join(dirA, "alice")).loadChannels();
    behind = (rec?.cursor ?? 0) < Math.max(...seqs.map((x) => x.seq));
    if (!behind) alice = await agent("alice", url, dirA);
  }
  assert.ok(behind, "alice's saved cursor covered every send before the kill, five times over");
  alice = await agent("alice", url, dirA);
  await bob.call("send", ch, "after the restart");
  const got = await alice.receiveN(ch, 1);
  assert.deepEqual(got.map((m) => [m.sender, m.text]), [["bob", "after the restart"]]);
  assert.doesNotMatch(alice.proc.stderr(), /skipped/);
  // Her own messages reached bob once each.
  const texts = (await bob.receiveN(ch, sentCount)).map((m) => m.text);
  assert.equal(texts.length, sentCount);
  assert.equal(new Set(texts).size, sentCount);
});

test("addMember repeated with the same key package, even after the adder restarts, returns the same Welcome", async () => {
  const { url } = await relay();
  const ch = "acme/readd/same";
  const dirA = await tempDir();
  let alice = await agent("alice", url, dirA);
  const bob = await agent("bob", url);
  const carol = await agent("carol", url);
  await alice.call("create", ch);
  const kp = await bob.call<string>("keyPackage");
  const w1 = await alice.call<string>("addMember", ch, kp);
  // The answer was lost (say the adder crashed before handing it on): ask again, also after a
  // restart, and with other commits in between.
  assert.equal(await alice.call<string>("addMember", ch, kp), w1);
  await addTo(alice, carol, ch);
  await alice.kill();
  alice = await agent("alice", url, dirA);
  assert.equal(await alice.call<string>("addMember", ch, kp), w1);
  // Nothing was committed twice: bob, carol and alice are three members, and bob's Welcome works.
  await bob.call("join", ch, w1);
  // Bob joins at the epoch of his add and then reads carol's add from the relay.
  const all = ["alice", "bob", "carol"];
  let seen: string[] = [];
  await eventually(
    async () => (seen = (await bob.call<string[]>("members", ch)).sort()).length === 3,
    10_000,
    "carol's add at bob",
  );
  assert.deepEqual(seen, all);
  await carol.call("send", ch, "hello bob");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["hello bob"]);
  // Another member does not have that Welcome: it is refused there as before.
  await assert.rejects(carol.call("addMember", ch, kp), { code: "invalid_argument" });
});
