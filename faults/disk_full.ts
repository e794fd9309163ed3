// Fault: the relay's disk fills up. Publishes must be refused with an error
// (not acked, not crashing the relay), and everything acked before must still
// be in the log after a restart. Needs a tiny tmpfs (root); without mount
// rights the scenario reports itself as skipped.
import { execFileSync } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import { RawConn } from "./_raw.ts";
import { freePort, type Outcome, readRelayLog, RelayProc, Report, tempDir } from "./_harness.ts";

/** Options of {@linkcode diskFull}. */
export interface DiskFullOptions {
  /** Size of the tmpfs, KiB. */
  sizeKiB?: number;
}

/** Whether this process may mount a tmpfs (root on Linux). */
export async function canMountTmpfs(): Promise<boolean> {
  const dir = await tempDir("skytale-mnt-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Runs the scenario. */
export async function diskFull(o: DiskFullOptions = {}): Promise<Outcome> {
  const r = new Report("relay disk full");
  if (!await canMountTmpfs()) {
    r.fig("skipped: cannot mount a tmpfs (needs root)", "skipped");
    return r.done();
  }
  const root = await tempDir("skytale-faults-disk-");
  const dir = path.join(root, "relay");
  await fsp.mkdir(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${o.sizeKiB ?? 1024}k`, "tmpfs", dir]);
  const relay = new RelayProc(await freePort(), dir);
  try {
    await relay.start();
    const channel = "faults/disk/full";
    const c = await RawConn.open(relay.url);
    await c.request({ type: "create", reqId: 0, channel });
    const acked = new Map<number, string>();
    const refusals = new Map<string, number>();
    let firstRefusal = "";
    let refused = 0;
    for (let i = 0; i < 20_000 && refused < 50; i++) {
      const id = crypto.getRandomValues(new Uint8Array(16));
      const a = await c.request({
        type: "publish",
        reqId: 0,
        channel,
        id,
        kind: "application",
        epoch: 0,
        payload: crypto.getRandomValues(new Uint8Array(2048)),
      });
      if (a.type === "ack") acked.set(a.seq, id.toHex());
      else {
        refused++;
        const key = a.type === "error"
          ? `error ${a.code}`
          : a.type === "nack"
          ? `nack ${a.code}`
          : a.type;
        refusals.set(key, (refusals.get(key) ?? 0) + 1);
        if (!firstRefusal && a.type === "error") firstRefusal = a.message;
      }
    }
    const alive = (await c.request({ type: "ping", reqId: 0 }).catch(() =>
      undefined
    ))?.type === "pong";
    c.close();
    // Restart on a disk that is still full: acked entries must all be there.
    await relay.kill("SIGKILL");
    const rows = readRelayLog(relay.dbFile).filter((e) => e.channel === channel);
    const stored = new Map(rows.map((e) => [e.seq, e.id.toHex()]));
    const lost = [...acked].filter(([seq, id]) => stored.get(seq) !== id).length;
    // Free space: publishing works again.
    execFileSync("mount", ["-o", "remount,size=65536k", dir]);
    await relay.start();
    const c2 = await RawConn.open(relay.url);
    const again = await c2.request({
      type: "publish",
      reqId: 0,
      channel,
      id: crypto.getRandomValues(new Uint8Array(16)),
      kind: "application",
      epoch: 0,
      payload: new Uint8Array(16),
    });
    c2.close();
    r.fig("tmpfs size, KiB", o.sizeKiB ?? 1024);
    r.fig("publishes acked before the disk filled", acked.size, acked.size > 0);
    r.fig(
      "publishes refused once full",
      [...refusals].map(([k, n]) => `${n} × ${k}`).join(", ") || "none",
      refused > 0 && !refusals.has("ack"),
    );
    r.fig("relay still answering ping when full", alive ? "yes" : "no", alive);
    r.fig("acked entries missing after SIGKILL + restart", lost, lost === 0);
    r.fig("publish accepted after space is freed", again.type, again.type === "ack");
    if (firstRefusal) r.note(`refusal message: "${firstRefusal}"`);
    r.note(
      `relay log line: ${
        (/.*internal error.*|.*disk.*full.*|.*SQLITE_FULL.*/i.exec(relay.allLogs()) ?? ["none"])[0]
      }`,
    );
  } finally {
    await relay.kill("SIGTERM");
    try {
      execFileSync("umount", [dir], { stdio: "ignore" });
    } catch { /* already gone */ }
  }
  return r.done();
}
