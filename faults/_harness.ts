// Shared pieces of the fault and attack scenarios (faults/*.ts): relay processes
// on a fixed loopback port that can be SIGKILLed and restarted, member agents,
// a seeded random source, reading a relay's SQLite log from outside, and RSS.
import fsp from "node:fs/promises";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Agent } from "../tests/_agent.ts";
import { freePort, type Proc, spawnScript, tempDir } from "../tests/_helpers.ts";

export { Agent, freePort, tempDir };

/** A small seeded PRNG (mulberry32), so a failing run can be repeated with its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A relay process on a fixed port with a SQLite log in `dataDir`; restartable. */
export class RelayProc {
  port: number;
  dataDir: string;
  args: string[];
  proc: Proc | undefined;
  /** stderr of every incarnation so far. */
  logs: string[] = [];
  starts = 0;

  constructor(port: number, dataDir: string, args: string[] = []) {
    this.port = port;
    this.dataDir = dataDir;
    this.args = args;
  }

  /** The WebSocket URL. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** The SQLite log file. */
  get dbFile(): string {
    return path.join(this.dataDir, "relay.db");
  }

  /** Starts (or restarts) the relay; resolves once it listens. */
  async start(): Promise<void> {
    for (let attempt = 0;; attempt++) {
      const p = spawnScript("mod.ts", [
        "relay",
        "--host",
        "127.0.0.1",
        "--port",
        String(this.port),
        "--data-dir",
        this.dataDir,
        ...this.args,
      ]);
      this.proc = p;
      this.starts++;
      try {
        await p.waitFor(/listening on ws:\/\//, 30_000);
        return;
      } catch (e) {
        this.logs.push(p.stderr());
        // The port may linger a moment after a SIGKILL; try again briefly.
        if (attempt >= 20 || !/EADDRINUSE|in use/i.test(p.stderr())) throw e;
        await sleep(200);
      }
    }
  }

  /** SIGKILLs the relay (no clean shutdown) and waits for it to be gone. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = undefined;
    await p.kill(signal);
    this.logs.push(p.stderr());
  }

  /** Every stderr line the relay wrote, across restarts. */
  allLogs(): string {
    return this.logs.join("") + (this.proc?.stderr() ?? "");
  }

  /** The relay process id. */
  get pid(): number | undefined {
    return this.proc?.child.pid;
  }
}

/** One row of a relay's entries table. */
export interface Row {
  channel: string;
  seq: number;
  epoch: number;
  kind: number;
  id: Uint8Array;
  payload: Uint8Array;
}

/** Reads every entry of a relay's SQLite log (read-only, from outside the relay). */
export function readRelayLog(dbFile: string): Row[] {
  const db = new DatabaseSync(dbFile, { readOnly: true });
  try {
    return (db.prepare(
      "SELECT c.name AS channel, e.seq, e.epoch, e.kind, e.id, e.payload FROM entries e JOIN channels c ON c.cid = e.cid ORDER BY c.name, e.seq",
    ).all() as unknown as Row[]).map((r) => ({
      channel: String(r.channel),
      seq: Number(r.seq),
      epoch: Number(r.epoch),
      kind: Number(r.kind),
      id: new Uint8Array(r.id),
      payload: new Uint8Array(r.payload),
    }));
  } finally {
    db.close();
  }
}

/** Resident set size of a process in bytes (Linux /proc), or 0 if unknown. */
export async function rssBytes(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  try {
    const s = await fsp.readFile(`/proc/${pid}/status`, "utf8");
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Every file under `dir`, recursively, with its bytes. */
export async function readTree(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const walk = async (d: string) => {
    let names: string[];
    try {
      names = await fsp.readdir(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n);
      const st = await fsp.stat(p).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await walk(p);
      else out.set(p, new Uint8Array(await fsp.readFile(p).catch(() => Buffer.alloc(0))));
    }
  };
  await walk(dir);
  return out;
}

/** Whether `needle` occurs in `hay`. */
export function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  const first = needle[0];
  outer: for (
    let i = hay.indexOf(first!);
    i !== -1 && i <= hay.length - needle.length;
    i = hay.indexOf(first!, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Starts members `ids` against `relayUrl`, each with its own data dir under `root`. */
export async function startAgents(
  ids: string[],
  relayUrl: string,
  root: string,
  env: Record<string, string> = {},
): Promise<Agent[]> {
  return await Promise.all(
    ids.map((id) =>
      Agent.start(id, {
        SKYTALE_RELAY: relayUrl,
        SKYTALE_DATA_DIR: path.join(root, "members"),
        ...env,
      })
    ),
  );
}

/** Creates `channel` at `agents[0]` and adds every other agent to it. */
export async function formChannel(agents: Agent[], channel: string): Promise<void> {
  const [owner, ...rest] = agents;
  await owner!.call("create", channel);
  for (const a of rest) {
    const kp = await a.call<string>("keyPackage");
    const welcome = await owner!.call<string>("addMember", channel, kp);
    await a.call("join", channel, welcome);
  }
}

/** A figure for RELIABILITY.md: name, value and whether it met its bar. */
export interface Figure {
  name: string;
  value: string | number;
  ok: boolean;
}

/** A scenario's result. */
export interface Outcome {
  scenario: string;
  ok: boolean;
  figures: Figure[];
  notes: string[];
  seconds: number;
}

/** Collects figures for one scenario. */
export class Report {
  scenario: string;
  figures: Figure[] = [];
  notes: string[] = [];
  #t0 = Date.now();

  constructor(scenario: string) {
    this.scenario = scenario;
  }

  /** Records a figure. */
  fig(name: string, value: string | number, ok = true): void {
    this.figures.push({ name, value, ok });
  }

  /** Records a note. */
  note(s: string): void {
    this.notes.push(s);
  }

  /** The outcome. */
  done(): Outcome {
    return {
      scenario: this.scenario,
      ok: this.figures.every((f) => f.ok),
      figures: this.figures,
      notes: this.notes,
      seconds: Math.round((Date.now() - this.#t0) / 100) / 10,
    };
  }
}
