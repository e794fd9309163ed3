// Fault: a member process is SIGKILLed at random points (mid-send, mid-commit,
// mid-write of its state, between making a key package and joining). After a
// restart nothing it had acknowledged is lost, nothing arrives twice, and no
// key or nonce is reused: a reused (epoch, sender, generation) makes the
// receiver's MLS decryption fail, which the manager reports as "skipped" on
// stderr, so every receiver must decrypt every entry.
import path from "node:path";
import process from "node:process";
import {
  Agent,
  formChannel,
  freePort,
  type Outcome,
  RelayProc,
  Report,
  rng,
  sleep,
  startAgents,
  tempDir,
} from "./_harness.ts";

/** Options of {@linkcode memberKill}. */
export interface MemberKillOptions {
  /** Kill/restart cycles of the victim. */
  cycles: number;
  seed?: number;
}

/** Runs the scenario. */
export async function memberKill(o: MemberKillOptions): Promise<Outcome> {
  const r = new Report("member SIGKILL at random points");
  const rand = rng(o.seed ?? 2);
  const root = await tempDir("skytale-faults-member-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const env = { SKYTALE_RELAY: relay.url, SKYTALE_DATA_DIR: path.join(root, "members") };
  const [a, b0] = await startAgents(["alice", "bob"], relay.url, root);
  let b = b0!;
  const channel = "faults/member/kill";
  await formChannel([a!, b], channel);
  const bAcked = new Set<string>(); // bob's sends that returned
  const aAcked = new Set<string>(); // alice's sends that returned
  const bGot: string[] = []; // what bob's receive() returned, across restarts
  const aGot: string[] = [];
  let bobN = 0;
  let aliceN = 0;
  let commitsAcked = 0;
  let kills = 0;
  let joinKills = 0;
  let joined = 0;
  const skippedBefore: string[] = [];
  const bobSeqs = new Set<number>();
  const aliceSeqs = new Set<number>();
  const t0 = Date.now();
  const step = (what: string) => {
    if (process.env.FAULTS_VERBOSE) process.stderr.write(`[${Date.now() - t0} ms] ${what}\n`);
  };
  for (let cycle = 0; cycle < o.cycles; cycle++) {
    step(`cycle ${cycle}`);
    const stop = { v: false };
    const bob = b;
    const work: Promise<void>[] = [];
    // bob sends, receives and sometimes rotates keys; alice sends to bob.
    work.push((async () => {
      while (!stop.v) {
        const t = `bob:${bobN++}`;
        try {
          const { seq } = await bob.call<{ seq: number }>("send", channel, t);
          bAcked.add(t);
          bobSeqs.add(seq);
        } catch {
          return;
        }
      }
    })());
    // receive() hands messages out and forgets them; a kill between that and the
    // answer reaching this driver through the pipe would look like a loss that
    // the member did not cause, so the receive loop stops before each kill.
    const recvStop = { v: false };
    const receiving = (async () => {
      while (!stop.v && !recvStop.v) {
        try {
          for (const m of await bob.call<{ text: string }[]>("receive", channel, 0.2)) {
            bGot.push(m.text);
          }
        } catch {
          return;
        }
      }
    })();
    work.push(receiving);
    work.push((async () => {
      while (!stop.v) {
        await sleep(100 + 300 * rand());
        try {
          await bob.call("rotateKeys", channel);
          commitsAcked++;
        } catch {
          return;
        }
      }
    })());
    work.push((async () => {
      while (!stop.v) {
        const t = `alice:${aliceN++}`;
        const { seq } = await a!.call<{ seq: number }>("send", channel, t);
        aAcked.add(t);
        aliceSeqs.add(seq);
        await sleep(5);
      }
    })());
    await sleep(200 + 1500 * rand());
    recvStop.v = true;
    await receiving;
    await bob.kill();
    kills++;
    stop.v = true;
    await Promise.allSettled(work);
    skippedBefore.push(...(bob.proc.stderr().match(/.*skipped.*/g) ?? []));
    step("killed bob");
    b = await Agent.start("bob", env);
    step("bob restarted");
    // Between key package and join: a fresh identity makes a key package and is
    // killed at a random moment, during or after; its restart must still join.
    const jid = `joiner${cycle}`;
    let j = await Agent.start(jid, env);
    const kpP = j.call<string>("keyPackage");
    await sleep(40 * rand());
    let kp: string | undefined;
    if (rand() < 0.5) {
      await j.kill();
      joinKills++;
      kp = await kpP.catch(() => undefined);
      j = await Agent.start(jid, env);
    } else {
      kp = await kpP;
    }
    kp ??= await j.call<string>("keyPackage");
    step("key package");
    const welcome = await a!.call<string>("addMember", channel, kp);
    step("added");
    const jp = j.call("join", channel, welcome);
    if (rand() < 0.5) {
      await sleep(30 * rand());
      await j.kill();
      joinKills++;
      await jp.catch(() => {});
      j = await Agent.start(jid, env);
      const mine = await j.call<{ channel: string }[]>("channels");
      if (!mine.some((c) => c.channel === channel)) await j.call("join", channel, welcome);
    } else {
      await jp;
    }
    joined++;
    step("joined");
    await j.stop();
    await a!.call("removeMember", channel, jid);
    step("removed");
  }
  // Settle: both sides drain everything.
  await sleep(500);
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    const [ga, gb] = await Promise.all([
      a!.call<{ text: string }[]>("receive", channel, 0.5),
      b.call<{ text: string }[]>("receive", channel, 0.5),
    ]);
    aGot.push(...ga.map((m) => m.text));
    bGot.push(...gb.map((m) => m.text));
    if (ga.length === 0 && gb.length === 0) {
      const aSet = new Set(aGot);
      const bSet = new Set(bGot);
      if ([...bAcked].every((t) => aSet.has(t)) && [...aAcked].every((t) => bSet.has(t))) break;
    }
  }
  const lostToA = [...bAcked].filter((t) => !aGot.includes(t));
  const lostToB = [...aAcked].filter((t) => !bGot.includes(t));
  const lostA = lostToA.length;
  const lostB = lostToB.length;
  for (const t of [...lostToA, ...lostToB].slice(0, 5)) r.note(`lost: ${t}`);
  const dupA = aGot.length - new Set(aGot).size;
  const dupB = bGot.length - new Set(bGot).size;
  // A restarted bob re-reads its own messages published just before the kill. MLS
  // cannot decrypt them for their sender, so the manager must recognise them by the
  // publish ids saved with its state and skip them quietly: a "skipped" line for one of
  // them is a failure too, counted apart to tell the two causes apart.
  const bobSkips = [...skippedBefore, ...(b.proc.stderr().match(/.*skipped.*/g) ?? [])];
  const own = bobSkips.filter((l) => {
    const seq = Number(/seq (\d+): skipped application/.exec(l)?.[1] ?? NaN);
    return bobSeqs.has(seq) || (!Number.isNaN(seq) && !aliceSeqs.has(seq));
  });
  const skipped = [
    ...bobSkips.filter((l) => !own.includes(l)),
    ...(a!.proc.stderr().match(/.*skipped.*/g) ?? []),
  ];
  const [ea, eb] = await Promise.all([
    a!.call<string>("exportSecret", channel),
    b.call<string>("exportSecret", channel),
  ]);
  r.fig("victim SIGKILLs (mid-send/commit/write)", kills, kills > 0);
  r.fig("kills between key package and join, or mid-join", joinKills);
  r.fig("joiners that joined after their restart", `${joined}/${o.cycles}`, joined === o.cycles);
  r.fig("messages acked by bob / by alice", `${bAcked.size} / ${aAcked.size}`);
  r.fig("bob's rotateKeys commits acked", commitsAcked);
  r.fig("acked messages lost", lostA + lostB, lostA + lostB === 0);
  r.fig("messages handed out twice", dupA + dupB, dupA + dupB === 0);
  r.fig(
    "entries a member could not decrypt (key/nonce reuse)",
    skipped.length,
    skipped.length === 0,
  );
  r.fig("own messages the restarted victim failed to recognise", own.length, own.length === 0);
  r.fig("members converge (exporter secret)", ea === eb ? "equal" : "DIFFERENT", ea === eb);
  for (const s of skipped.slice(0, 5)) r.note(s);
  await Promise.all([a!.stop(), b.stop()]);
  await relay.kill("SIGTERM");
  return r.done();
}
