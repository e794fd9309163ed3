// Invites against a real relay process: each admission takes exactly one use, a request
// handed out again gets the same answer, and everything else is refused by the inviter.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "./_agent.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import {
  decodeInviteToken,
  encodeInviteToken,
  type InviteToken,
  JoinReply,
  JoinRequest,
  open,
  seal,
} from "../src/channel/invite.ts";
import type { RelayClient } from "../src/relay/client.ts";
import { newMailbox, type OwnedMailbox } from "../src/relay/mailbox.ts";
import { MemoryStore } from "../src/store/memory.ts";
import { eventually, type Proc, relayClient, rid, startRelayProcess, tempDir } from "./_helpers.ts";

const procs: Proc[] = [];
const agents: Agent[] = [];
after(async () => {
  await Promise.all(agents.map((a) => a.kill()));
  await Promise.all(procs.map((p) => p.kill("SIGKILL")));
});

async function relay() {
  const r = await startRelayProcess(["--store", "memory"]);
  procs.push(r.proc);
  return r;
}

async function agent(identity: string, url: string): Promise<Agent> {
  const a = await Agent.start(identity, {
    SKYTALE_RELAY: url,
    SKYTALE_DATA_DIR: await tempDir(),
  });
  agents.push(a);
  return a;
}

function manager(identity: string, url: string): SkytaleChannelManager {
  return new SkytaleChannelManager({ identity, endpoint: url, store: new MemoryStore() });
}

interface Reply {
  ok: boolean;
  welcome?: string | undefined;
  error?: string | undefined;
}

/** A join request made by hand, as a joiner holding the token (or the relay replaying one) can. */
class Crafted {
  readonly rc: RelayClient;
  readonly inv: InviteToken;
  readonly box: OwnedMailbox;
  constructor(rc: RelayClient, token: string, box: OwnedMailbox) {
    this.rc = rc;
    this.inv = decodeInviteToken(token);
    this.box = box;
  }

  static async make(rc: RelayClient, token: string): Promise<Crafted> {
    return new Crafted(rc, token, await newMailbox("wel:"));
  }

  get reply(): string {
    return this.box.address;
  }

  async request(keyPackage: string, identity: string, reply = this.reply): Promise<Uint8Array> {
    const inv = this.inv;
    return await seal(inv.secret, `request:${inv.id}`, { keyPackage, reply, identity });
  }

  async put(request: Uint8Array): Promise<void> {
    const inv = this.inv;
    await this.rc.mailboxPut(inv.address, request, 60);
  }

  /** Answers taken from the reply address and not yet looked at. */
  readonly #got: Reply[] = [];

  /** The next answer at this reply address (opened with the invite secret). */
  async answer(ms = 20_000): Promise<Reply> {
    const inv = this.inv;
    await eventually(
      async () => {
        if (this.#got.length > 0) return true;
        for (const item of await this.rc.mailboxLease(this.reply, this.box.takeKey)) {
          const r = await open(inv.secret, `reply:${inv.id}`, item.payload, JoinReply);
          if (r) this.#got.push(r);
          await this.rc.mailboxAck(this.reply, [item.id], this.box.takeKey);
        }
        return this.#got.length > 0;
      },
      ms,
      "the inviter's answer",
    );
    return this.#got.shift()!;
  }
}

test("an invite with one use admits one member: racing joiners and a reused reply address are refused", async () => {
  const { url } = await relay();
  const ch = "acme/invite/race";
  const alice = await agent("alice", url);
  await alice.call("create", ch);
  const token = await alice.call<string>("invite", ch, 1);
  const rc = relayClient(url);
  const mallory = manager("mallory", url);
  const joiners = [1, 2, 3, 4, 5].map((i) => manager(`joiner${i}`, url));
  try {
    // Mallory holds the token: her own request is admitted and takes the one use.
    const crafted = await Crafted.make(rc, token);
    const first = await crafted.request(await mallory.keyPackage(), "mallory");
    await crafted.put(first);
    const admitted = await crafted.answer();
    assert.equal(admitted.ok, true, admitted.error ?? "");
    // Then five joiners race, and so do requests that reuse her admitted reply address with
    // other key packages: each of those used to count as her request again and was admitted.
    const extras = [1, 2, 3].map((i) => manager(`extra${i}`, url));
    const reused = await Promise.all(
      extras.map(async (m) => crafted.request(await m.keyPackage(), m.identity)),
    );
    const joins = Promise.allSettled(joiners.map((j) => j.joinWithToken(ch, token)));
    await Promise.all(reused.map((r) => crafted.put(r)));
    // Every reused request gets a sealed refusal at the reply address.
    for (let i = 0; i < reused.length; i++) {
      const a = await crafted.answer();
      assert.equal(a.ok, false, "a request reusing an admitted reply address was admitted");
      assert.match(a.error ?? "", /another key package/);
    }
    for (const [i, r] of (await joins).entries()) {
      assert.equal(r.status, "rejected", `joiner${i + 1} was admitted`);
      const e = (r as PromiseRejectedResult).reason as Error & { code?: string };
      assert.match(e.message, /refused to admit "joiner\d".*no uses left/, e.message);
    }
    await Promise.all(extras.map((m) => m.close()));
    // The one new member is mallory.
    assert.deepEqual((await alice.call<string[]>("members", ch)).sort(), ["alice", "mallory"]);
    // Every refusal is on the inviter's stderr with its reason.
    await eventually(
      () => (alice.proc.stderr().match(/refused a join request/g) ?? []).length >= 8,
      10_000,
      "eight refusals logged",
    );
    assert.match(alice.proc.stderr(), /refused a join request .*no uses left/);
    assert.match(alice.proc.stderr(), /refused a join request .*another key package/);
    // Mallory's own request handed out again still gets her Welcome, using nothing.
    await crafted.put(first);
    assert.deepEqual(await crafted.answer(), admitted);
    await mallory.join(ch, admitted.welcome!);
    assert.deepEqual((await alice.call<string[]>("members", ch)).sort(), ["alice", "mallory"]);
  } finally {
    await Promise.all([rc.close(), mallory.close(), ...joiners.map((j) => j.close())]);
  }
});

test("a join request that reaches the inviter after the invite expired is refused, whatever the joiner's clock says", async () => {
  const { url } = await relay();
  const ch = "acme/invite/expired";
  const alice = await agent("alice", url);
  await alice.call("create", ch);
  const token = await alice.call<string>("invite", ch, 1, 1);
  const rc = relayClient(url);
  const bob = manager("bob", url);
  try {
    const crafted = await Crafted.make(rc, token);
    const request = await crafted.request(await bob.keyPackage(), "bob");
    // Bob's clock is behind: his token still looks valid to him, but not to the inviter.
    await new Promise((r) => setTimeout(r, 1500));
    await crafted.put(request);
    const a = await crafted.answer();
    assert.equal(a.ok, false);
    assert.match(a.error ?? "", /expired/);
    assert.match(alice.proc.stderr(), /refused a join request .*expired/);
    assert.deepEqual(await alice.call<string[]>("members", ch), ["alice"]);
  } finally {
    await Promise.all([rc.close(), bob.close()]);
  }
});

test("a join request whose identity is not its key package's credential is refused and logged", async () => {
  const { url } = await relay();
  const ch = "acme/invite/liar";
  const alice = await agent("alice", url);
  await alice.call("create", ch);
  const token = await alice.call<string>("invite", ch, 60, 2);
  const rc = relayClient(url);
  const mallory = manager("mallory", url);
  try {
    const crafted = await Crafted.make(rc, token);
    // Mallory's key package, presented as bob's: the inviter's log would say "bob" was admitted.
    await crafted.put(await crafted.request(await mallory.keyPackage(), "bob"));
    const a = await crafted.answer();
    assert.equal(a.ok, false);
    assert.match(a.error ?? "", /names "bob" but its key package is for "mallory"/);
    assert.match(
      alice.proc.stderr(),
      /refused a join request from "bob".*key package is for "mallory"/,
    );
    assert.deepEqual(await alice.call<string[]>("members", ch), ["alice"]);
  } finally {
    await Promise.all([rc.close(), mallory.close()]);
  }
});

test("a refusal replayed into a joiner's reply address is ignored: a reply must name the joiner's request", async () => {
  const { url } = await relay();
  const ch = "acme/invite/replay";
  // The test plays the inviter by hand (alice only makes the Welcome), so that it sees bob's
  // reply address as the relay does, and replays there a refusal made for another request.
  const alice = manager("alice", url);
  const bob = manager("bob", url);
  const rc = relayClient(url);
  try {
    await alice.create(ch);
    const requests = await newMailbox("inv:");
    const inv: InviteToken = {
      relay: url,
      channel: ch,
      id: rid().toHex(),
      address: requests.address,
      secret: crypto.getRandomValues(new Uint8Array(32)).toHex(),
      expires: Date.now() + 60_000,
    };
    let settled = false;
    const join = bob.joinWithToken(ch, encodeInviteToken(inv), { timeout: 20 });
    void join.then(() => (settled = true), () => (settled = true));
    let request: Uint8Array | undefined;
    await eventually(
      async () => {
        for (const item of await rc.mailboxLease(inv.address, requests.takeKey)) {
          request = item.payload;
        }
        return request !== undefined;
      },
      10_000,
      "bob's request",
    );
    const req = await open(inv.secret, `request:${inv.id}`, request!, JoinRequest);
    assert.ok(req);
    const hash = (r: Uint8Array) => crypto.subtle.digest("SHA-256", r as BufferSource);
    const other = new Uint8Array(await hash(rid())).toHex();
    const refusal = await seal(inv.secret, `reply:${inv.id}`, {
      ok: false,
      error: "the invite has no uses left",
      req: other,
    });
    await rc.mailboxPut(req.reply, refusal, 60);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(settled, false, "bob took a refusal meant for another request");
    // The answer to his own request admits him.
    const welcome = await alice.addMember(ch, req.keyPackage);
    const mine = new Uint8Array(await hash(request!)).toHex();
    await rc.mailboxPut(
      req.reply,
      await seal(inv.secret, `reply:${inv.id}`, { ok: true, welcome, req: mine }),
      60,
    );
    await join;
    assert.deepEqual((await bob.members(ch)).sort(), ["alice", "bob"]);
  } finally {
    await Promise.all([rc.close(), alice.close(), bob.close()]);
  }
});

test("an invite request handed out again after it was admitted gets the same Welcome and uses no second use", async () => {
  const { url } = await relay();
  const ch = "acme/invite/again";
  const alice = await agent("alice", url);
  const bob = await agent("bob", url);
  const carol = await agent("carol", url);
  await alice.call("create", ch);
  const token = await alice.call<string>("invite", ch, 2);
  // Bob's request, as joinWithToken makes it, put twice: the second time stands for the relay
  // handing it out again after the inviter crashed between admitting and acking it.
  const rc = relayClient(url);
  const crafted = await Crafted.make(rc, token);
  const request = await crafted.request(await bob.call<string>("keyPackage"), "bob");
  try {
    await crafted.put(request);
    const first = await crafted.answer();
    assert.equal(first.ok, true);
    await crafted.put(request);
    assert.deepEqual(await crafted.answer(), first);
    await bob.call("join", ch, first.welcome);
    // The invite's second use is still there for carol.
    await carol.call("joinWithToken", ch, token);
    assert.deepEqual((await alice.call<string[]>("members", ch)).sort(), ["alice", "bob", "carol"]);
  } finally {
    await rc.close();
  }
});
