// Attacks on membership, identity and the commit path (issue 11), each through a real relay
// process: junk and crafted commits must not jam the channel, names cannot be taken over.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createCommit, encodeMlsMessage, generateKeyPackage } from "ts-mls";
import { defaultCapabilities, defaultLifetime, getCiphersuiteFromName } from "ts-mls";
import { getCiphersuiteImpl } from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { decodeGroupEnvelope } from "../src/mls/_codec.ts";
import { DEFAULT_SUITE } from "../src/mls/engine.ts";
import { SkytaleError } from "../src/errors.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { decodeIdentityKey, signWith } from "../src/identity.ts";
import { PROVE_CONTEXT } from "../src/relay/protocol.ts";
import { eventually, type Proc, relayClient, rid, startRelayProcess, tempDir } from "./_helpers.ts";

const procs: Proc[] = [];
const managers: SkytaleChannelManager[] = [];
after(async () => {
  await Promise.all(managers.map((m) => m.close().catch(() => {})));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

const enc = new TextEncoder();
const CH = "acme/attack/room";

async function world() {
  const r = await startRelayProcess(["--data-dir", await tempDir()]);
  procs.push(r.proc);
  const make = (identity: string, store = new MemoryStore()) => {
    const m = new SkytaleChannelManager({ identity, endpoint: r.url, store });
    managers.push(m);
    return m;
  };
  const alice = make("alice");
  const bobStore = new MemoryStore();
  const bob = make("bob", bobStore);
  const carol = make("carol");
  await alice.create(CH);
  for (const m of [bob, carol]) await m.join(CH, await alice.addMember(CH, await m.keyPackage()));
  return { url: r.url, make, alice, bob, bobStore, carol };
}

/** Resolves with the operation's result, or fails once `ms` pass (the jam the attack aims at). */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not complete within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function refused(e: unknown): boolean {
  assert.ok(e instanceof SkytaleError, String(e));
  assert.equal(e.code, "refused", e.message);
  return true;
}

function notMember(e: unknown): boolean {
  assert.ok(e instanceof SkytaleError, String(e));
  assert.equal(e.code, "auth", e.message);
  assert.match(e.message, /Only members/);
  return true;
}

/** A raw relay client; given a member's store, it proves that member's identity key. */
async function rawClient(url: string, as?: MemoryStore) {
  const blob = as ? await as.loadBlob("identity.key") : undefined;
  const key = blob ? decodeIdentityKey(blob) : undefined;
  return relayClient(url, {
    ...(key
      ? {
        prove: async (nonce: Uint8Array) => ({
          publicKey: key.publicKey,
          signature: await signWith(key, new Uint8Array([...PROVE_CONTEXT, ...nonce])),
        }),
      }
      : {}),
  });
}

async function epochOf(m: SkytaleChannelManager): Promise<number> {
  return (await m.channels()).find((c) => c.channel === CH)!.epoch;
}

test("junk published as a commit by a non-member or a member is refused, and removal and rotation still complete in under 5 s", async () => {
  const { url, alice, bob, bobStore, carol } = await world();
  const epoch = await epochOf(alice);
  const junk = (e: number) => ({
    id: rid(),
    kind: "commit" as const,
    epoch: e,
    payload: enc.encode("junk"),
  });
  // A non-member (no member's key) may neither publish nor read.
  const outsider = await rawClient(url);
  try {
    await assert.rejects(outsider.publish(CH, junk(epoch)), notMember);
    await assert.rejects(outsider.publish(CH, { ...junk(epoch), kind: "application" }), notMember);
    await assert.rejects(outsider.subscribe(CH, { seq: 1 }, () => {}), notMember);
  } finally {
    await outsider.close();
  }
  // A member's connection: 4 junk bytes at the channel's current epoch, the jam of the review.
  const member = await rawClient(url, bobStore);
  try {
    await assert.rejects(member.publish(CH, junk(epoch)), refused);
    // Junk for another epoch is nacked as stale: it takes no epoch either.
    assert.equal((await member.publish(CH, junk(epoch + 1))).ok, false);
  } finally {
    await member.close();
  }
  await within(5_000, "removing bob", alice.removeMember(CH, "bob"));
  await within(5_000, "rotating keys", alice.rotateKeys(CH));
  // Carol follows the removal (and the rotation) as she reads them from the relay.
  await eventually(
    async () => JSON.stringify(await carol.members(CH)) === JSON.stringify(["alice", "carol"]),
    10_000,
    "carol seeing bob's removal",
  );
  await alice.send(CH, "after the attack");
  const got = await carol.receive(CH, { timeout: 5 });
  assert.deepEqual(got.map((m) => m.text), ["after the attack"]);
  // The removed member decrypts nothing sent after its removal.
  assert.deepEqual(await bob.receive(CH, { timeout: 0.5 }), []);
});

test('a member\'s crafted commit adding a second "alice" with another key is refused; the others go on', async () => {
  const { url, alice, bob, bobStore, carol } = await world();
  // Bob builds the commit from his own state with ts-mls directly, bypassing every local check.
  const [record] = await bobStore.loadChannels();
  const state = decodeGroupEnvelope(record!.group, defaultClientConfig)!;
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName(DEFAULT_SUITE));
  const fake = await generateKeyPackage(
    { credentialType: "basic", identity: enc.encode("alice") },
    defaultCapabilities(),
    defaultLifetime,
    [],
    cs,
  );
  const crafted = await createCommit({ state, cipherSuite: cs }, {
    extraProposals: [{ proposalType: "add", add: { keyPackage: fake.publicPackage } }],
    wireAsPublicMessage: true,
  });
  const raw = await rawClient(url, bobStore);
  try {
    await assert.rejects(
      raw.publish(CH, {
        id: rid(),
        kind: "commit",
        epoch: Number(state.groupContext.epoch),
        payload: encodeMlsMessage(crafted.commit),
      }),
      (e) => refused(e) && /two members named "alice"/.test((e as Error).message),
    );
  } finally {
    await raw.close();
  }
  await within(5_000, "removing bob", alice.removeMember(CH, "bob"));
  await within(5_000, "rotating keys", carol.rotateKeys(CH));
  const roster = await carol.roster(CH);
  assert.deepEqual(roster.map((m) => m.name), ["alice", "carol"]);
  assert.equal(roster[0]!.did, (await alice.whoami()).did);
  await alice.send(CH, "still the real alice");
  const [m] = await carol.receive(CH, { timeout: 5 });
  assert.equal(m?.sender, "alice");
  assert.equal(m?.senderId, (await alice.whoami()).did);
  assert.deepEqual(await bob.receive(CH, { timeout: 0.5 }), []);
});

test('a second "alice" with another key is refused, and a removed name stays pinned to its key', async () => {
  const { make, alice, bob, carol } = await world();
  const alice2 = make("alice");
  await assert.rejects(carol.addMember(CH, await alice2.keyPackage()), (e) => {
    assert.ok(e instanceof SkytaleError);
    assert.match(e.message, /"alice" is already a member/);
    return true;
  });
  // Bob is removed; a new "bob" with another key would take his place under his name.
  const bobDid = (await bob.whoami()).did;
  await alice.removeMember(CH, "bob");
  const bob2 = make("bob");
  await assert.rejects(alice.addMember(CH, await bob2.keyPackage()), (e) => {
    assert.ok(e instanceof SkytaleError);
    assert.equal(e.code, "identity_mismatch");
    assert.ok(e.message.includes(bobDid), e.message);
    return true;
  });
  assert.deepEqual(await alice.members(CH), ["alice", "carol"]);
});
