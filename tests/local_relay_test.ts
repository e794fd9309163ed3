// The embedded local relay (DESIGN invariant 7): nothing started by hand, and a
// surviving process takes over the log when the hosting one dies.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "./_agent.ts";
import { freePort, tempDir } from "./_helpers.ts";

const agents: Agent[] = [];
after(async () => {
  await Promise.all(agents.map((a) => a.kill()));
});

test("two processes talk through the embedded relay, and a survivor takes over its log", async () => {
  const port = String(await freePort());
  const dataDir = await tempDir();
  const env = { SKYTALE_LOCAL_PORT: port, SKYTALE_DATA_DIR: dataDir, SKYTALE_RELAY: "" };
  const ch = "acme/local/relay";
  let alice = await Agent.start("alice", env);
  agents.push(alice);
  await alice.call("create", ch);
  const bob = await Agent.start("bob", env);
  agents.push(bob);
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
  alice = await Agent.start("alice", env);
  agents.push(alice);
  assert.deepEqual((await alice.receiveN(ch, 1)).map((m) => [m.sender, m.text]), [
    ["bob", "while alice is down"],
  ]);
  await alice.call("send", ch, "back again");
  assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["back again"]);
  await Promise.all([alice.stop(), bob.stop()]);
});
