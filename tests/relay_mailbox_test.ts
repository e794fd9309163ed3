// Relay mailboxes end to end: a take leases its items, an ack deletes them, and
// whatever a client took but did not ack comes back (when its connection closes,
// or when the lease lapses) instead of being lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import type { InviteRecord } from "../src/channel/invite.ts";
import { ApiKeyTokens } from "../src/relay/auth.ts";
import { connectWebSocket, type RelayClient } from "../src/relay/client.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import {
  decodeFrame,
  encodeFrame,
  type Frame,
  FrameType,
  peekRequestId,
} from "../src/relay/protocol.ts";
import { RelayServer } from "../src/relay/server.ts";
import { serve } from "../src/runtime/serve.ts";
import { FileStore } from "../src/store/file.ts";
import {
  box,
  eventually,
  numbered,
  numOf,
  relayClient,
  rid,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";
import { Agent } from "./_agent.ts";

const opaque = (n: number) => numbered(n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The address and take key of a test mailbox, as `mailboxTake` and `mailboxAck` frames carry them. */
const boxFrame = (name: string) => ({ address: box(name).address, key: box(name).takeKey });
/** The relay's lease for these tests, in ms (env of the relay process). */
const lease = (ms: number) => ({ SKYTALE_RELAY_MAILBOX_LEASE_MS: String(ms) });

/**
 * Leases from `address` until `n` items came back (bounded; they may come back over several
 * takes); returns their numbers in the order taken. An item handed out twice shows as a repeat.
 */
async function leaseAll(
  c: RelayClient,
  { address, takeKey }: { address: string; takeKey: Uint8Array },
  n: number,
): Promise<number[]> {
  const got: number[] = [];
  await eventually(
    async () => {
      got.push(...(await c.mailboxLease(address, takeKey)).map((i) => numOf(i.payload)));
      return got.length >= n;
    },
    15_000,
    `${n} items of ${address}`,
  );
  return got;
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1]);
}

/** A raw, greeted WebSocket that records the frames it receives. */
async function rawSocket(url: string): Promise<{
  ws: WebSocket;
  frames: Frame[];
  send: (f: Frame) => void;
  answer: (reqId: number) => Promise<Frame>;
}> {
  const ws = await connectWebSocket(url, 5000);
  const frames: Frame[] = [];
  ws.onmessage = (ev) => frames.push(decodeFrame(new Uint8Array(ev.data as ArrayBuffer)));
  const send = (f: Frame) => ws.send(encodeFrame(f));
  const answer = async (reqId: number) => {
    let f: Frame | undefined;
    await eventually(
      () => (f = frames.find((x) => "reqId" in x && x.reqId === reqId)) !== undefined,
      10_000,
      `the answer to request ${reqId}`,
    );
    return f!;
  };
  send({ type: "hello", reqId: 1 });
  assert.equal((await answer(1)).type, "helloOk");
  return { ws, frames, send, answer };
}

/**
 * Puts a filter in front of whatever `onmessage` handler the socket gets: messages for which
 * `swallow` returns true never reach it. (An accessor on the instance, since the clients differ
 * per runtime: Deno's is the `ws` package, whose events cannot stop propagation.)
 */
function swallowMessages(ws: WebSocket, swallow: (data: unknown) => boolean): void {
  let proto: object | null = Object.getPrototypeOf(ws);
  let desc: PropertyDescriptor | undefined;
  while (proto && !(desc = Object.getOwnPropertyDescriptor(proto, "onmessage"))) {
    proto = Object.getPrototypeOf(proto);
  }
  const { get, set } = desc!;
  Object.defineProperty(ws, "onmessage", {
    configurable: true,
    get: () => get!.call(ws),
    set: (h: ((ev: MessageEvent) => void) | null) =>
      set!.call(ws, h && ((ev: MessageEvent) => swallow(ev.data) || h.call(ws, ev))),
  });
}

test("a take leases its items: unacked ones come back once the lease lapses, acked ones never", async () => {
  const { proc, url, port } = await startRelayProcess([
    "--store",
    "memory",
    "--mailbox-lease",
    "1",
  ]);
  const a = relayClient(url);
  const b = relayClient(url);
  const c = relayClient(url);
  try {
    for (const n of [1, 2, 3]) await a.mailboxPut(box("inv:lease").address, opaque(n), 60);
    const taken = await b.mailboxLease(box("inv:lease").address, box("inv:lease").takeKey);
    assert.deepEqual(taken.map((i) => numOf(i.payload)), [1, 2, 3]);
    assert.ok(taken.every((i) => i.id.length === 16));
    // (That no other take gets them while the lease runs is checked with a long lease below:
    // this one is short, and a stalled machine could outlast it.)
    // b acks item 2, an id the relay never saw, and item 2 again: all fine.
    await b.mailboxAck(box("inv:lease").address, [taken[1]!.id, rid()], box("inv:lease").takeKey);
    await b.mailboxAck(box("inv:lease").address, [taken[1]!.id], box("inv:lease").takeKey);
    // The lease lapses without an ack for 1 and 3: they are handed out again, to c.
    assert.deepEqual(await leaseAll(c, box("inv:lease"), 2), [1, 3]);
    // c acks them: even once every lease has lapsed, nothing comes back.
    await c.mailboxAck(
      box("inv:lease").address,
      [taken[0]!.id, taken[2]!.id],
      box("inv:lease").takeKey,
    );
    await sleep(1300);
    assert.deepEqual(await c.mailboxLease(box("inv:lease").address, box("inv:lease").takeKey), []);
    // mailboxTake() is lease + ack in one: the blob is gone for good at once.
    await a.mailboxPut(box("inv:once").address, opaque(7), 60);
    assert.deepEqual(
      (await c.mailboxTake(box("inv:once").address, box("inv:once").takeKey)).map(numOf),
      [7],
    );
    await sleep(1300);
    assert.deepEqual(await c.mailboxTake(box("inv:once").address, box("inv:once").takeKey), []);
    // Ids acked: 2 + 1 by b, 2 by c, 1 by mailboxTake().
    assert.equal(await metric(port, "skytale_relay_mailbox_acks_total"), 6);
  } finally {
    await a.close();
    await b.close();
    await c.close();
    await proc.kill();
  }
});

test("a take whose answer never reaches its client: the items come back to the next take", async () => {
  // A lease far longer than the test: what comes back here comes back because the
  // relay saw the taker's connection close, not because the lease lapsed.
  const { proc, url } = await startRelayProcess(["--store", "memory"], lease(600_000));
  const a = relayClient(url);
  const b = relayClient(url);
  try {
    // A client that took the items, got the answer, and died before it used them.
    for (const n of [1, 2]) await a.mailboxPut(box("wel:crash").address, opaque(n), 60);
    const raw = await rawSocket(url);
    raw.send({ type: "mailboxTake", reqId: 2, ...boxFrame("wel:crash") });
    const items = await raw.answer(2);
    assert.equal(items.type === "mailboxItems" && items.items.length, 2);
    assert.deepEqual(
      await b.mailboxLease(box("wel:crash").address, box("wel:crash").takeKey),
      [],
      "leased while the taker is connected",
    );
    raw.ws.close();
    assert.deepEqual(await leaseAll(b, box("wel:crash"), 2), [1, 2]);

    // A client whose connection is closed right after it sent the take: it never reads the
    // answer, whether or not the relay got to send it.
    for (const n of [3, 4]) await a.mailboxPut(box("wel:lost").address, opaque(n), 60);
    const raw2 = await rawSocket(url);
    raw2.send({ type: "mailboxTake", reqId: 2, ...boxFrame("wel:lost") });
    raw2.ws.close();
    assert.deepEqual(await leaseAll(b, box("wel:lost"), 2), [3, 4]);
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
  }
});

test("a RelayClient whose connection drops as the take's answer arrives still gets the items", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"], lease(600_000));
  const a = relayClient(url);
  let drops = 0;
  const b = relayClient(url, {
    connect: async () => {
      const ws = await connectWebSocket(url, 2000);
      // The first answer with items never reaches the client: the connection drops with it.
      swallowMessages(ws, (data) => {
        const f = decodeFrame(new Uint8Array(data as ArrayBuffer));
        if (drops > 0 || f.type !== "mailboxItems" || f.items.length === 0) return false;
        drops++;
        ws.close();
        return true;
      });
      return ws;
    },
  });
  try {
    for (const n of [1, 2, 3]) await a.mailboxPut(box("wel:drop").address, opaque(n), 60);
    // The relay handed the items out; the client re-sends its take after the reconnect, and
    // it or the next take finds them again.
    const got: number[] = [];
    await eventually(
      async () => {
        got.push(
          ...(await b.mailboxLease(box("wel:drop").address, box("wel:drop").takeKey)).map((i) =>
            numOf(i.payload)
          ),
        );
        return got.length >= 3;
      },
      15_000,
      "the items after the drop",
    );
    assert.equal(drops, 1);
    assert.deepEqual(got, [1, 2, 3]);
  } finally {
    await a.close();
    await b.close();
    await proc.kill();
  }
});

test("clients taking one mailbox at once never get the same item", async () => {
  const dir = await tempDir();
  const { proc, url } = await startRelayProcess(["--data-dir", dir]);
  const put = relayClient(url);
  const takers = Array.from({ length: 4 }, () => relayClient(url));
  try {
    const N = 40;
    const got: number[] = [];
    for (let i = 0; i < N; i++) {
      await put.mailboxPut(box("kp:race").address, opaque(i), 60);
      if (i % 5 === 4) {
        const takes = await Promise.all(
          takers.flatMap((
            t,
          ) => [
            t.mailboxLease(box("kp:race").address, box("kp:race").takeKey),
            t.mailboxLease(box("kp:race").address, box("kp:race").takeKey),
          ]),
        );
        for (const t of takes) got.push(...t.map((x) => numOf(x.payload)));
      }
    }
    for (const t of takers) {
      got.push(
        ...(await t.mailboxLease(box("kp:race").address, box("kp:race").takeKey)).map((x) =>
          numOf(x.payload)
        ),
      );
    }
    assert.deepEqual(got.sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i));
  } finally {
    await put.close();
    for (const t of takers) await t.close();
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("a SQLite relay killed while items are leased: after a restart the unacked ones come back, the acked one never", async () => {
  const dir = await tempDir();
  let r = await startRelayProcess(["--data-dir", dir], lease(1500));
  const a = relayClient(r.url);
  try {
    for (const n of [1, 2, 3]) await a.mailboxPut(box("inv:restart").address, opaque(n), 600);
    const taken = await a.mailboxLease(box("inv:restart").address, box("inv:restart").takeKey);
    assert.deepEqual(taken.map((i) => numOf(i.payload)), [1, 2, 3]);
    await a.mailboxAck(box("inv:restart").address, [taken[1]!.id], box("inv:restart").takeKey);
    await a.close();
    // SIGKILL: the relay cannot hand anything back on its way out.
    await r.proc.kill("SIGKILL");
    r = await startRelayProcess(["--data-dir", dir], lease(1500));
    const b = relayClient(r.url);
    try {
      assert.deepEqual(await leaseAll(b, box("inv:restart"), 2), [1, 3]);
      await b.mailboxAck(
        box("inv:restart").address,
        taken.map((i) => i.id),
        box("inv:restart").takeKey,
      );
      await sleep(1700);
      assert.deepEqual(
        await b.mailboxLease(box("inv:restart").address, box("inv:restart").takeKey),
        [],
      );
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
    await r.proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

test("bad mailbox acks get an error that says what is wrong; the connection stays usable", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const raw = await rawSocket(url);
  const c = relayClient(url);
  try {
    const err = async (reqId: number, f: Frame) => {
      raw.send(f);
      const a = await raw.answer(reqId);
      assert.equal(a.type, "error", JSON.stringify(a));
      return a as Extract<Frame, { type: "error" }>;
    };
    let e = await err(2, { type: "mailboxAck", reqId: 2, address: "inv:x", ids: [] });
    assert.equal(e.code, "invalid_argument");
    assert.match(e.message, /must name 1 to 1024 item ids, got 0/);
    const many = Array.from({ length: 1025 }, () => rid());
    e = await err(3, { type: "mailboxAck", reqId: 3, address: "inv:x", ids: many });
    assert.match(e.message, /must name 1 to 1024 item ids, got 1025/);
    e = await err(4, { type: "mailboxAck", reqId: 4, address: "", ids: [rid()] });
    assert.equal(e.code, "invalid_argument");
    assert.match(e.message, /Mailbox address must be 1 to 255 bytes, got 0/);
    // A truncated ack (its count promises an id that is not there).
    raw.ws.send(new Uint8Array([1, FrameType.mailboxAck, 0, 0, 0, 5, 0, 1, 0x61, 0, 0, 0, 1]));
    const t = await raw.answer(5);
    assert.equal(t.type === "error" && t.code, "protocol");
    assert.match((t as Extract<Frame, { type: "error" }>).message, /Truncated "mailboxAck"/);
    // An unknown id is fine.
    raw.send({ type: "mailboxAck", reqId: 6, ...boxFrame("inv:x"), ids: [rid()] });
    assert.equal((await raw.answer(6)).type, "ok");
    // Before hello, an ack is refused like every other request.
    const fresh = await connectWebSocket(url, 5000);
    const frames: Frame[] = [];
    fresh.onmessage = (ev) => frames.push(decodeFrame(new Uint8Array(ev.data as ArrayBuffer)));
    fresh.send(encodeFrame({ type: "mailboxAck", reqId: 9, address: "inv:x", ids: [rid()] }));
    await eventually(() => frames.length > 0, 10_000, "the answer before hello");
    assert.equal(frames[0]!.type === "error" && frames[0]!.code, "protocol");
    fresh.close();
    // The client checks ids itself; an empty ack sends nothing.
    await assert.rejects(
      () => c.mailboxAck(box("inv:x").address, [new Uint8Array(3)], box("inv:x").takeKey),
      {
        code: "invalid_argument",
        message: /Mailbox item id must be 16 bytes, got 3/,
      },
    );
    await c.mailboxAck(box("inv:x").address, [], box("inv:x").takeKey);
    // What the relay refuses, the client reports.
    await assert.rejects(() => c.mailboxAck("", [rid()], box("inv:x").takeKey), {
      code: "invalid_argument",
      message: /Mailbox address must be 1 to 255 bytes/,
    });
    assert.ok((await c.ping()) >= 0);
  } finally {
    raw.ws.close();
    await c.close();
    await proc.kill();
  }
});

test("against a relay from before mailboxAck, takes and acks still work", async () => {
  // Such a relay answers the unknown frame type with error protocol (and deleted on take).
  const relay = new RelayServer({ log: new MemoryLog() });
  const http = await serve({
    hostname: "127.0.0.1",
    port: 0,
    onRequest: () => new Response("not found", { status: 404 }),
    onSocket: (conn) => {
      const h = relay.openConnection(conn);
      return {
        message: (data) =>
          data[1] === FrameType.mailboxAck
            ? conn.send(encodeFrame({
              type: "error",
              reqId: peekRequestId(data),
              code: "protocol",
              message: `Unknown frame type ${data[1]}`,
            }))
            : h.message(data),
        close: () => h.close(),
      };
    },
  });
  const c = relayClient(`ws://127.0.0.1:${http.port}`);
  try {
    for (const n of [1, 2]) await c.mailboxPut(box("wel:old").address, opaque(n), 60);
    assert.deepEqual(
      (await c.mailboxTake(box("wel:old").address, box("wel:old").takeKey)).map(numOf),
      [1, 2],
    );
    await c.mailboxAck(box("wel:old").address, [rid()], box("wel:old").takeKey);
  } finally {
    await c.close();
    await relay.close();
    await http.close();
  }
});

test("a relay refuses to start with a mailbox lease that is not a positive number of ms", async () => {
  const p = spawnScript(
    "mod.ts",
    ["relay", "--host", "127.0.0.1", "--port", "0", "--store", "memory"],
    lease(0),
  );
  const code = await p.exited;
  assert.notEqual(code, 0);
  assert.match(
    p.stderr(),
    /mailbox lease must be a whole number of milliseconds of at least 1, got "0"/,
  );
});

test("an invite request taken by an inviter that died before using it is served by the restarted inviter", async () => {
  const dir = await tempDir();
  const { proc, url, port } = await startRelayProcess(["--data-dir", dir], lease(600_000));
  const aliceDir = await tempDir();
  const agents: Agent[] = [];
  const agent = async (identity: string, dataDir: string) => {
    const a = await Agent.start(identity, { SKYTALE_RELAY: url, SKYTALE_DATA_DIR: dataDir });
    agents.push(a);
    return a;
  };
  const thief = relayClient(url);
  try {
    const ch = "acme/mailbox/invite";
    const alice = await agent("alice", aliceDir);
    await alice.call("create", ch);
    const token = await alice.call<string>("invite", ch);
    await alice.stop();
    const bob = await agent("bob", await tempDir());
    const joined = bob.call("joinWithToken", ch, token);
    // Stands in for an inviter that took bob's request and died before it answered: it
    // holds the lease, then its connection goes away without an ack.
    // (It holds the request mailbox's take key, which only the inviter's own store has.)
    const blob = await new FileStore(path.join(aliceDir, "alice")).loadBlob("invites");
    const [inv] = JSON.parse(new TextDecoder().decode(blob!)) as InviteRecord[];
    await eventually(
      async () =>
        (await thief.mailboxLease(inv!.address, Uint8Array.fromHex(inv!.takeKey))).length === 1,
      20_000,
      "the request",
    );
    await thief.close();
    // The inviter comes back: the request is handed out again, and bob gets in.
    const alice2 = await agent("alice", aliceDir);
    await alice2.call("channels"); // starts the manager, which goes back to serving its invites
    await joined;
    await alice2.call("send", ch, "welcome, bob");
    assert.deepEqual((await bob.receiveN(ch, 1)).map((m) => m.text), ["welcome, bob"]);
    // Each used item was acked: the request by alice, the reply (Welcome) by bob.
    await eventually(
      async () => await metric(port, "skytale_relay_mailbox_acks_total") >= 2,
      20_000,
      "two acks",
    );
    assert.equal(await metric(port, "skytale_relay_mailbox_acks_total"), 2);
  } finally {
    await thief.close();
    // Stopped, not killed: a relay under Deno whose clients were SIGKILLed lingers ~10 s after
    // SIGTERM.
    await Promise.all(agents.map((a) => a.stop()));
    await proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.rm(aliceDir, { recursive: true, force: true });
  }
});

/** A relay process with `--auth`, and a client maker for each org (API key → token). */
async function authRelay(...orgs: string[]) {
  const dir = await tempDir();
  const keys: string[] = [];
  for (const org of orgs) {
    const p = spawnScript("mod.ts", ["keys", "create", "--org", org, "--json", "--data-dir", dir]);
    assert.equal(await p.exited, 0, p.stderr());
    keys.push((JSON.parse(p.stdout()) as { key: string }).key);
  }
  const r = await startRelayProcess(["--auth", "--data-dir", dir, "--store", "memory"]);
  const made: RelayClient[] = [];
  const client = (org: number) => {
    const tokens = new ApiKeyTokens({
      apiKey: keys[org]!,
      apiUrls: [r.url.replace("ws://", "http://")],
    });
    const c = relayClient(r.url, { token: () => tokens.token() });
    made.push(c);
    return c;
  };
  const close = async () => {
    await Promise.all(made.map((c) => c.close()));
    await r.proc.kill();
    await fsp.rm(dir, { recursive: true, force: true });
  };
  return { ...r, client, close };
}

test("mailboxes are scoped to the org: another org cannot see, take, ack or fill one of the same address", async () => {
  const relay = await authRelay("acme", "globex");
  const acme = relay.client(0);
  const globex = relay.client(1);
  // globex even holds the take key: the same address names another mailbox in its org.
  const { address, takeKey } = box("inv:shared");
  try {
    await acme.mailboxPut(address, opaque(1), 60);
    // globex sees nothing there, and what it puts there acme never sees.
    assert.deepEqual(await globex.mailboxLease(address, takeKey), []);
    await globex.mailboxPut(address, opaque(2), 60);
    const mine = await acme.mailboxLease(address, takeKey);
    assert.deepEqual(mine.map((i) => numOf(i.payload)), [1]);
    // globex acks acme's item by its id: nothing happens to it.
    await globex.mailboxAck(address, [mine[0]!.id], takeKey);
    assert.deepEqual(
      (await globex.mailboxLease(address, takeKey)).map((i) => numOf(i.payload)),
      [2],
    );
    // acme's connection goes without an ack: its item comes back to acme, still there.
    await acme.close();
    assert.deepEqual(await leaseAll(relay.client(0), box("inv:shared"), 1), [1]);
  } finally {
    await relay.close();
  }
});

test("only the holder of a mailbox's take key can take from it or ack its items", async () => {
  const { proc, url } = await startRelayProcess(["--store", "memory"]);
  const owner = relayClient(url);
  const other = relayClient(url);
  const { address, takeKey } = box("wel:owned");
  const wrongKey = box("wel:other").takeKey;
  try {
    for (const n of [1, 2]) await other.mailboxPut(address, opaque(n), 60);
    // Without the key, or with another one, nothing is taken and nothing acked.
    await assert.rejects(other.mailboxLease(address, wrongKey), {
      code: "auth",
      message: /The take key does not own mailbox "wel:owned:[0-9a-f]{64}"/,
    });
    const raw = await rawSocket(url);
    raw.send({ type: "mailboxTake", reqId: 2, address });
    const e = await raw.answer(2);
    assert.equal(e.type === "error" && e.code, "auth");
    assert.match((e as Extract<Frame, { type: "error" }>).message, /only be taken .* take key/);
    raw.ws.close();
    const taken = await owner.mailboxLease(address, takeKey);
    assert.deepEqual(taken.map((i) => numOf(i.payload)), [1, 2]);
    await assert.rejects(other.mailboxAck(address, [taken[0]!.id], wrongKey), { code: "auth" });
    // The owner's connection goes without an ack: both items are still there for it.
    await owner.close();
    const again = relayClient(url);
    try {
      assert.deepEqual(await leaseAll(again, box("wel:owned"), 2), [1, 2]);
    } finally {
      await again.close();
    }
  } finally {
    await owner.close();
    await other.close();
    await proc.kill();
  }
});
