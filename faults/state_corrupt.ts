// Fault: a member's state file is truncated or corrupted while it is stopped.
// Restart must say so on stderr and recover the previous good copy (`.bak`),
// never reset silently; with both copies bad it must refuse with
// `state_corrupt`. After a recovery the member must still not reuse a key or
// nonce: the backup may predate the last messages it sent.
import fsp from "node:fs/promises";
import path from "node:path";
import {
  Agent,
  formChannel,
  freePort,
  type Outcome,
  RelayProc,
  Report,
  startAgents,
  tempDir,
} from "./_harness.ts";

type Damage = "truncate" | "bitflip" | "delete";

async function damage(file: string, how: Damage, seed: number): Promise<void> {
  // A SIGKILL between the two renames of an atomic write leaves no main file
  // (the previous one is the .bak): already the "missing" case.
  const read = await fsp.readFile(file).catch(() => undefined);
  if (read === undefined) return;
  const b = new Uint8Array(read);
  if (how === "delete") return await fsp.rm(file);
  if (how === "truncate") return await fsp.writeFile(file, b.subarray(0, (seed * 7919) % b.length));
  b[(seed * 7919) % b.length]! ^= 1 << (seed % 8);
  await fsp.writeFile(file, b);
}

/** Options of {@linkcode stateCorrupt}. */
export interface StateCorruptOptions {
  /** Damage/restart rounds (cycling truncate, bit flip, delete). */
  rounds: number;
}

/** Runs the scenario. */
export async function stateCorrupt(o: StateCorruptOptions): Promise<Outcome> {
  const r = new Report("truncated or corrupted state file");
  const root = await tempDir("skytale-faults-state-");
  const relay = new RelayProc(await freePort(), path.join(root, "relay"));
  await relay.start();
  const env = { SKYTALE_RELAY: relay.url, SKYTALE_DATA_DIR: path.join(root, "members") };
  const [a, b0] = await startAgents(["alice", "bob"], relay.url, root);
  let b = b0!;
  const channel = "faults/state/corrupt";
  await formChannel([a!, b], channel);
  const dir = path.join(root, "members", "bob", "channels");
  const file = path.join(dir, `${Buffer.from(channel).toString("hex")}.json`);
  const sent: string[] = [];
  let recovered = 0;
  const hows: Damage[] = ["truncate", "bitflip", "delete"];
  for (let round = 0; round < o.rounds; round++) {
    for (let i = 0; i < 5; i++) {
      const t = `bob:${round}:${i}`;
      await b.call("send", channel, t);
      sent.push(t);
    }
    await b.stop();
    await damage(file, hows[round % hows.length]!, round + 1);
    b = await Agent.start("bob", env);
    await b.call("channels");
    if (/recovered the previous good copy/.test(b.proc.stderr())) recovered++;
  }
  // The worst case of a lost last write: the backup predates bob's last sends
  // (its last save was the send pass that encrypted them, then the file broke).
  const staleRounds = Math.max(1, Math.floor(o.rounds / 3));
  for (let round = 0; round < staleRounds; round++) {
    // Send first, so a key update owed by the previous recovery is done and the
    // snapshot is exactly one write behind (as a real lost last write is).
    for (let i = 0; i < 2; i++) {
      const t = `bob:pre:${round}:${i}`;
      await b.call("send", channel, t);
      sent.push(t);
    }
    await b.stop();
    const snapshot = await fsp.readFile(file);
    b = await Agent.start("bob", env);
    for (let i = 0; i < 3; i++) {
      const t = `bob:stale:${round}:${i}`;
      await b.call("send", channel, t);
      sent.push(t);
    }
    await b.kill();
    await fsp.writeFile(file + ".bak", snapshot);
    await damage(file, "bitflip", round + 11);
    b = await Agent.start("bob", env);
    await b.call("channels");
  }
  r.fig("restarts from a backup older than the last sends", staleRounds);
  for (let i = 0; i < 5; i++) {
    const t = `bob:end:${i}`;
    await b.call("send", channel, t);
    sent.push(t);
  }
  const got = (await a!.receiveN(channel, sent.length, 30_000)).map((m) => m.text);
  const lost = sent.filter((t) => !got.includes(t));
  const skips = a!.proc.stderr().match(/.*skipped.*/g) ?? [];
  r.fig("damage/restart rounds (truncate, bit flip, delete)", o.rounds);
  r.fig(
    "restarts that reported and recovered from .bak",
    `${recovered}/${o.rounds}`,
    recovered === o.rounds,
  );
  r.fig("messages bob sent / alice received", `${sent.length} / ${got.length}`);
  r.fig("messages alice could not decrypt (reused generation)", skips.length, skips.length === 0);
  r.fig("acked messages lost", lost.length, lost.length === 0);
  for (const s of skips.slice(0, 3)) r.note(`alice: ${s}`);
  // Both copies bad: a clear state_corrupt, files left as they are.
  await b.stop();
  await damage(file, "bitflip", 3);
  await damage(file + ".bak", "truncate", 5);
  const before = Buffer.concat([await fsp.readFile(file), await fsp.readFile(file + ".bak")]);
  b = await Agent.start("bob", env);
  let code = "none";
  let msg = "";
  try {
    await b.call("channels");
  } catch (e) {
    code = (e as { code?: string }).code ?? "error";
    msg = (e as Error).message;
  }
  const after = Buffer.concat([await fsp.readFile(file), await fsp.readFile(file + ".bak")]);
  r.fig("both copies corrupt → error code", code, code === "state_corrupt");
  r.fig(
    "both copies corrupt → files left untouched",
    before.equals(after) ? "yes" : "no",
    before.equals(after),
  );
  r.note(`both copies corrupt: "${msg}"`);
  await Promise.all([a!.stop(), b.stop()]);
  await relay.kill("SIGTERM");
  return r.done();
}
