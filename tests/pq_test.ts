// A post-quantum channel (X-Wing hybrid KEM) end to end through a relay process, beside channels
// of the default suite.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { SkytaleError } from "../src/errors.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { type Proc, startRelayProcess, tempDir } from "./_helpers.ts";

const PQ = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";
const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

test("a post-quantum channel: create, add, join, send, receive, invite, remove; suites do not mix", async () => {
  const relay = await startRelayProcess(["--data-dir", await tempDir()]);
  procs.push(relay.proc);
  const make = (identity: string) => {
    const m = new SkytaleChannelManager({
      identity,
      endpoint: relay.url,
      store: new MemoryStore(),
    });
    managers.push(m);
    return m;
  };
  const [alice, bob, carol] = [make("alice"), make("bob"), make("carol")];
  const pq = "acme/pq/room";
  const classic = "acme/classic/room";
  await alice.create(pq, { ciphersuite: PQ });
  await alice.create(classic);
  const suites = Object.fromEntries(
    (await alice.channels()).map((c) => [c.channel, c.ciphersuite]),
  );
  assert.equal(suites[pq], PQ);
  assert.equal(suites[classic], "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519");

  // A key package of the other suite is refused, with a message naming both suites.
  const classicKp = await bob.keyPackage();
  await assert.rejects(alice.addMember(pq, classicKp), (e) => {
    assert.ok(e instanceof SkytaleError);
    assert.match(e.message, /ciphersuite/);
    assert.match(e.message, /XWING/);
    return true;
  });
  const pqKp = await bob.keyPackage({ ciphersuite: PQ });
  await assert.rejects(alice.addMember(classic, pqKp), /ciphersuite/);

  await bob.join(pq, await alice.addMember(pq, pqKp));
  await alice.send(pq, "quantum-safe hello");
  const [m] = await bob.receive(pq, { timeout: 10 });
  assert.equal(m?.text, "quantum-safe hello");
  await bob.send(pq, "and back");
  assert.equal((await alice.receive(pq, { timeout: 10 }))[0]?.text, "and back");

  // An invite to a PQ channel carries its suite, so the joiner's key package matches.
  await carol.joinWithToken(pq, await alice.invite(pq));
  assert.deepEqual(await carol.members(pq), ["alice", "bob", "carol"]);

  await alice.removeMember(pq, "bob");
  await alice.send(pq, "after bob");
  assert.equal((await carol.receive(pq, { timeout: 10 })).at(-1)?.text, "after bob");
  assert.deepEqual(await bob.receive(pq, { timeout: 0.5 }), []);
  assert.deepEqual(await alice.members(pq), ["alice", "carol"]);
  await assert.rejects(alice.create("acme/pq/bad", { ciphersuite: "MLS_NOPE" }), /ciphersuite/);
});
