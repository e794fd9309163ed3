// Attack: replayed ciphertext, messages from a non-member or forged with a
// member's name, reading after removal/leave or before joining, secrets on
// the wire or at the relay, unsolicited Welcomes and a leaked key package.
// Every frame between the members and the relay passes a recording proxy.
import fsp from "node:fs/promises";
import path from "node:path";
import WebSocket, { WebSocketServer } from "ws";
import { Buffer } from "node:buffer";
import { decodeInviteToken } from "../src/channel/invite.ts";
import { decodeIdentityKey } from "../src/identity.ts";
import type { Frame } from "../src/relay/protocol.ts";
import { MlsEngine } from "../src/mls/engine.ts";
import { decodeRecord } from "../src/store/codec.ts";
import type { ChannelRecord, KeyPackageRecord } from "../src/store/types.ts";
import { RawConn } from "./_raw.ts";
import {
  type Agent,
  containsBytes,
  formChannel,
  freePort,
  type Outcome,
  readRelayLog,
  readTree,
  RelayProc,
  Report,
  sleep,
  startAgents,
  tempDir,
} from "./_harness.ts";

/** A WebSocket proxy that records every frame in both directions. */
export async function recordingProxy(
  target: string,
): Promise<{ url: string; frames: Uint8Array[]; close(): void }> {
  const frames: Uint8Array[] = [];
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  wss.on("connection", (client) => {
    const up = new WebSocket(target);
    const queue: Buffer[] = [];
    up.on("open", () => {
      for (const b of queue) up.send(b);
      queue.length = 0;
    });
    client.on("message", (d: Buffer) => {
      frames.push(new Uint8Array(d));
      if (up.readyState === WebSocket.OPEN) up.send(d);
      else queue.push(d);
    });
    up.on("message", (d: Buffer) => {
      frames.push(new Uint8Array(d));
      client.send(d);
    });
    client.on("close", () => up.terminate());
    up.on("close", () => client.terminate());
    up.on("error", () => client.terminate());
    client.on("error", () => up.terminate());
  });
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    frames,
    close: () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
    },
  };
}

async function readStore<T>(file: string): Promise<T> {
  return await decodeRecord<T>(new Uint8Array(await fsp.readFile(file)), file);
}

/** Runs the scenario. */
export async function attacks(): Promise<Outcome> {
  const r = new Report("attacks on a live channel");
  const root = await tempDir("skytale-attacks-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const proxy = await recordingProxy(relay.url);
  const members = path.join(root, "members");
  const agents = await startAgents(
    ["alice", "bob", "carol", "dave", "eve", "victim"],
    proxy.url,
    root,
  );
  const [alice, bob, carol, dave, eve, victim] = agents as [
    Agent,
    Agent,
    Agent,
    Agent,
    Agent,
    Agent,
  ];
  const channel = "atk/team/chan";
  const MARK = "PLAINTEXT-MARKER-7f3a";
  const mls = await MlsEngine.create();
  const chFile = (who: string) =>
    path.join(members, who, "channels", `${Buffer.from(channel).toString("hex")}.json`);

  // bob's key package private part, before it is used (for the leak check).
  const bobKp = await bob.call<string>("keyPackage");
  const kpDir = path.join(members, "bob", "keypackages");
  const kpRec = await readStore<KeyPackageRecord>(path.join(kpDir, (await fsp.readdir(kpDir))[0]!));
  await alice.call("create", channel);
  await bob.call("join", channel, await alice.call<string>("addMember", channel, bobKp));
  await formChannel([alice, carol], "atk/team/other"); // carol is in another channel of alice…
  await carol.call(
    "join",
    channel,
    await alice.call<string>("addMember", channel, await carol.call("keyPackage")),
  );
  await eve.call(
    "join",
    channel,
    await alice.call<string>("addMember", channel, await eve.call("keyPackage")),
  );

  // 1. Replay: republish a captured ciphertext (same id, then a new id).
  const { seq } = await alice.call<{ seq: number }>("send", channel, `${MARK} replay-me`);
  await bob.receiveN(channel, 1, 10_000);
  const row = readRelayLog(relay.dbFile).find((e) => e.channel === channel && e.seq === seq)!;
  // A non-member's connection (it proves no member's key) can neither publish nor read.
  const outsider = await RawConn.open(relay.url);
  const outPub = await outsider.request({
    type: "publish",
    reqId: 0,
    channel,
    id: row.id,
    kind: "application",
    epoch: row.epoch,
    payload: row.payload,
  });
  const outSub = await outsider.request({
    type: "subscribe",
    reqId: 0,
    channel,
    from: { seq: 1 },
  });
  outsider.close();
  const refusedAuth = (f: Frame) => f.type === "error" && f.code === "auth";
  r.fig(
    "a non-member's connection publishes / reads",
    `${outPub.type === "error" ? outPub.code : outPub.type} / ${
      outSub.type === "error" ? outSub.code : outSub.type
    }`,
    refusedAuth(outPub) && refusedAuth(outSub),
  );
  // What follows is done by a member gone rogue: eve's connection, with eve's identity key.
  const eveKey = decodeIdentityKey(
    (await readStore<{ data: Uint8Array }>(
      path.join(members, "eve", "blobs", `${Buffer.from("identity.key").toString("hex")}.json`),
    )).data,
  )!;
  const raw = await RawConn.open(relay.url, eveKey);
  const same = await raw.request({
    type: "publish",
    reqId: 0,
    channel,
    id: row.id,
    kind: "application",
    epoch: row.epoch,
    payload: row.payload,
  });
  const fresh = await raw.request({
    type: "publish",
    reqId: 0,
    channel,
    id: crypto.getRandomValues(new Uint8Array(16)),
    kind: "application",
    epoch: row.epoch,
    payload: row.payload,
  });
  await sleep(1000);
  const afterReplay = await bob.call<{ text: string }[]>("receive", channel, 1);
  const replayed = afterReplay.filter((m) => m.text.includes("replay-me")).length;
  r.fig(
    "replay with the same publish id: relay answer",
    same.type === "ack" && same.seq === seq ? "original ack, nothing appended" : same.type,
    same.type === "ack" && same.seq === seq,
  );
  r.fig(
    "replay with a new publish id: relay answer",
    fresh.type === "ack" ? `appended as seq ${fresh.seq} (opaque to the relay)` : fresh.type,
  );
  r.fig("replay with a new publish id delivered to bob's app again", replayed, replayed === 0);
  r.fig(
    "replay reported on bob's stderr",
    /skipped application/.test(bob.proc.stderr()) ? "yes" : "no",
    /skipped application/.test(bob.proc.stderr()),
  );

  // 2. A non-member, and a forger using alice's name without her keys.
  const before = (bob.proc.stderr().match(/skipped/g) ?? []).length;
  for (const as of ["mallory", "alice"]) {
    const g = await mls.createGroup(new TextEncoder().encode(channel), as);
    const m = await mls.encrypt(g, new TextEncoder().encode(`${MARK} forged by ${as}`));
    await raw.request({
      type: "publish",
      reqId: 0,
      channel,
      id: crypto.getRandomValues(new Uint8Array(16)),
      kind: "application",
      epoch: 0,
      payload: m.message,
    });
    await raw.request({
      type: "publish",
      reqId: 0,
      channel,
      id: crypto.getRandomValues(new Uint8Array(16)),
      kind: "application",
      epoch: row.epoch,
      payload: m.message,
    });
  }
  await sleep(1000);
  const forged =
    (await bob.call<{ text: string }[]>("receive", channel, 1)).filter((m) =>
      m.text.includes("forged")
    ).length;
  const reported = (bob.proc.stderr().match(/skipped/g) ?? []).length - before;
  r.fig("forged/non-member messages delivered", forged, forged === 0);
  r.fig("forged/non-member messages reported (stderr)", `${reported}/4`, reported === 4);

  // 3. Removed member, member who left, joiner.
  const carolState = (await readStore<ChannelRecord>(chFile("carol"))).group;
  const eveState = (await readStore<ChannelRecord>(chFile("eve"))).group;
  await alice.call("send", channel, `${MARK} before-dave`);
  await alice.call("removeMember", channel, "carol");
  await eve.call("leave", channel);
  await sleep(1500); // someone commits eve's leave proposal
  await dave.call(
    "join",
    channel,
    await alice.call<string>("addMember", channel, await dave.call("keyPackage")),
  );
  const after = await alice.call<{ seq: number }>("send", channel, `${MARK} after-removal`);
  const daveGot = await dave.receiveN(channel, 1, 10_000);
  const carolGot = await carol.call<{ text: string }[]>("receive", channel, 1).catch((e) =>
    (e as Error).message
  );
  const afterRow = readRelayLog(relay.dbFile).find((e) =>
    e.channel === channel && e.seq === after.seq
  )!;
  const canRead = async (state: Uint8Array) => {
    try {
      await mls.process(mls.decodeGroup(state), afterRow.payload);
      return true;
    } catch {
      return false;
    }
  };
  const carolCan = await canRead(carolState);
  const eveCan = await canRead(eveState);
  const aliceMembers = await alice.call<string[]>("members", channel);
  const carolLater = typeof carolGot === "string"
    ? 0
    : carolGot.filter((m) => m.text.includes("after-removal")).length;
  r.fig(
    "removed member (carol) receives messages sent after removal",
    carolLater,
    carolLater === 0,
  );
  r.fig("carol's last group state decrypts a later ciphertext", carolCan ? "yes" : "no", !carolCan);
  r.fig(
    "eve (left) gone from the group",
    aliceMembers.includes("eve") ? "no" : "yes",
    !aliceMembers.includes("eve"),
  );
  r.fig("eve's last group state decrypts a later ciphertext", eveCan ? "yes" : "no", !eveCan);
  r.fig(
    "joiner (dave) sees messages from before its join",
    daveGot.filter((m) => m.text.includes("before-dave")).length,
    !daveGot.some((m) => m.text.includes("before-dave")),
  );

  // 4. Unsolicited Welcome and a leaked key package.
  const victimKp = await victim.call<string>("keyPackage");
  await eve.call("create", "atk/evil/trap");
  const trap = await eve.call<string>("addMember", "atk/evil/trap", victimKp);
  await sleep(500);
  const victimChannels = await victim.call<{ channel: string }[]>("channels");
  r.fig(
    "victim pulled into a channel it did not ask for",
    victimChannels.length,
    victimChannels.length === 0,
  );
  let misnamed = "joined";
  await victim.call("join", channel, trap).catch((e) => misnamed = (e as { code: string }).code);
  r.fig("a Welcome joined under another channel's name", misnamed, misnamed === "welcome_mismatch");
  await eve.call("create", "atk/evil/reuse");
  const second = await eve.call<string>("addMember", "atk/evil/reuse", bobKp);
  let reuse = "joined";
  await bob.call("join", "atk/evil/reuse", second).catch((e) =>
    reuse = (e as { code: string }).code
  );
  const kpLeft = (await fsp.readdir(kpDir)).length;
  r.fig("bob's used key package private part kept on disk", kpLeft, kpLeft === 0);
  r.fig("second Welcome for a used (leaked) key package", reuse, reuse === "welcome_mismatch");

  // 5. Invite flow, then look for secrets at the relay and on the wire.
  const token = await alice.call<string>("invite", channel);
  const frank = (await startAgents(["frank"], proxy.url, root))[0]!;
  await frank.call("joinWithToken", channel, token);
  await alice.call("send", channel, `${MARK} last`);
  await frank.receiveN(channel, 1, 10_000);
  const secret = decodeInviteToken(token).secret;
  const exporter = Uint8Array.fromHex(await alice.call<string>("exportSecret", channel));
  const enc = new TextEncoder();
  const needles: [string, Uint8Array][] = [
    ["plaintext marker", enc.encode(MARK)],
    ["invite secret (hex)", enc.encode(secret)],
    ["invite secret (bytes)", Uint8Array.fromHex(secret)],
    ["exporter secret", exporter],
    ["invite token", enc.encode(token.slice(8, 40))],
  ];
  for (let i = 0; i + 32 <= kpRec.privateKey.length; i += 16) {
    needles.push([
      `key package private part [${i}..${i + 32})`,
      kpRec.privateKey.subarray(i, i + 32),
    ]);
  }
  const relayFiles = await readTree(path.join(root, "relay"));
  const logs = enc.encode(relay.allLogs());
  const places: [string, Uint8Array[]][] = [
    ["relay store", [...relayFiles.values()]],
    ["relay logs (stderr)", [logs]],
    [`frames on the wire (${proxy.frames.length})`, proxy.frames],
  ];
  for (const [where, hay] of places) {
    const hits = needles.filter(([, n]) => hay.some((h) => containsBytes(h, n))).map(([w]) => w);
    r.fig(
      `secrets found in ${where}`,
      hits.length === 0 ? "none" : hits.join(", "),
      hits.length === 0,
    );
  }
  r.note(
    `searched for ${needles.length} needles: marker, invite secret, token, exporter secret, key package private slices`,
  );
  raw.close();
  proxy.close();
  await Promise.all([alice, bob, carol, dave, eve, victim, frank].map((a) => a.stop()));
  await relay.kill("SIGTERM");
  return r.done();
}
