// Fault: three members commit (add, remove, update) concurrently, round after
// round. The relay must accept exactly one commit per epoch, every member must
// end on the same epoch and group secret (an MLS exporter), and none may be
// stuck (every call returns, losers retry).
import path from "node:path";
import {
  formChannel,
  freePort,
  type Outcome,
  readRelayLog,
  RelayProc,
  Report,
  rng,
  startAgents,
  tempDir,
} from "./_harness.ts";

/** Options of {@linkcode commitRace}. */
export interface CommitRaceOptions {
  rounds: number;
  seed?: number;
}

/** Runs the scenario. */
export async function commitRace(o: CommitRaceOptions): Promise<Outcome> {
  const r = new Report("3 members committing concurrently");
  const rand = rng(o.seed ?? 3);
  const root = await tempDir("skytale-faults-race-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const members = await startAgents(["m0", "m1", "m2"], relay.url, root);
  const spares = await startAgents(["x0", "x1", "x2"], relay.url, root);
  const channel = "faults/race/commits";
  await formChannel(members, channel);
  const inGroup = new Set<string>();
  const counts = { update: 0, add: 0, remove: 0, refused: 0, failed: 0 };
  const failures: string[] = [];
  for (let round = 0; round < o.rounds; round++) {
    await Promise.all(members.map(async (m) => {
      const x = spares[Math.floor(rand() * spares.length)]!;
      const pick = rand();
      try {
        if (pick < 0.4) {
          await m.call("rotateKeys", channel);
          counts.update++;
        } else if (!inGroup.has(x.identity)) {
          const kp = await x.call<string>("keyPackage");
          inGroup.add(x.identity);
          try {
            await m.call("addMember", channel, kp);
            counts.add++;
          } catch (e) {
            inGroup.delete(x.identity);
            throw e;
          }
        } else {
          inGroup.delete(x.identity);
          await m.call("removeMember", channel, x.identity);
          counts.remove++;
        }
      } catch (e) {
        const code = (e as { code?: string }).code;
        // Losing a race for the same spare is refused with a clear error.
        if (code === "invalid_argument" || code === "unknown_member") counts.refused++;
        else {
          counts.failed++;
          failures.push(
            `round ${round} ${m.identity}: ${code} ${(e as Error).message.split("\n")[0]}`,
          );
        }
      }
    }));
    // Re-sync the harness's idea of membership with the group's.
    const now = await members[0]!.call<string[]>("members", channel);
    inGroup.clear();
    for (const id of now) if (id.startsWith("x")) inGroup.add(id);
  }
  // Converge: everyone reaches the relay's epoch.
  const rows = readRelayLog(relay.dbFile).filter((e) => e.channel === channel && e.kind === 1);
  const epochs = rows.map((e) => e.epoch);
  const onePerEpoch = epochs.every((e, i) => e === i);
  const relayEpoch = epochs.length;
  const end = Date.now() + 30_000;
  let chans: { epoch: number }[] = [];
  while (Date.now() < end) {
    chans = await Promise.all(
      members.map(async (m) =>
        (await m.call<{ channel: string; epoch: number }[]>("channels")).find((c) =>
          c.channel === channel
        )!
      ),
    );
    if (chans.every((c) => c.epoch === relayEpoch)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const secrets = await Promise.all(members.map((m) => m.call<string>("exportSecret", channel)));
  const nacks = members.reduce(
    (n, m) => n + (m.proc.stderr().match(/was nacked/g)?.length ?? 0),
    0,
  );
  r.fig("rounds (3 concurrent commits each)", o.rounds);
  r.fig(
    "commits applied: update / add / remove",
    `${counts.update} / ${counts.add} / ${counts.remove}`,
  );
  r.fig("nacks (lost races, retried)", nacks);
  r.fig(
    "refused with a clear error (spare already added/removed: invalid_argument, unknown_member)",
    counts.refused,
  );
  r.fig("calls failed otherwise (stuck/timeout)", counts.failed, counts.failed === 0);
  r.fig("commits in the relay log / epochs", `${rows.length} / ${relayEpoch}`);
  r.fig("exactly one commit per epoch", onePerEpoch ? "yes" : "no", onePerEpoch);
  r.fig(
    "members at the relay's epoch",
    chans.map((c) => c.epoch).join(", "),
    chans.every((c) => c.epoch === relayEpoch),
  );
  r.fig(
    "exporter secrets equal",
    new Set(secrets).size === 1 ? "yes" : "no",
    new Set(secrets).size === 1,
  );
  for (const f of failures.slice(0, 5)) r.note(f);
  await Promise.all([...members, ...spares].map((a) => a.stop()));
  await relay.kill("SIGTERM");
  return r.done();
}
