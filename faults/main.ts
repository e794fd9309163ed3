// `deno task faults`: the fault and attack scenarios of issue 7, bounded in
// time, on loopback only. Prints a Markdown table of figures (the source of
// docs/RELIABILITY.md) and exits non-zero if any figure misses its bar.
//
//   deno task faults                       # default sizes (the figures; ≈ 6-8 min on 2 cores)
//   deno task faults --quick               # small sizes (≈ 1-2 min)
//   deno task faults --only relay-kill,fuzz --messages 2000 --seed 5
//   deno task faults --json out.json       # also write the outcomes as JSON
//
// Knobs: --messages N (per sender, relay kill; default 10000), --cycles N (member
// kills; 30), --rounds N (commit race; 200), --corrupt N (damage rounds; 6),
// --pause S (slow subscriber; 30), --frames/--mls/--mcp N (fuzz cases; 60000,
// 5000 per MLS path, 20000), --seed N.
import fsp from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import { reaping } from "../tests/_helpers.ts";
import type { Outcome } from "./_harness.ts";
import { attacks } from "./attacks.ts";
import { commitRace } from "./commit_race.ts";
import { diskFull } from "./disk_full.ts";
import { fuzz } from "./fuzz.ts";
import { memberKill } from "./member_kill.ts";
import { relayKill } from "./relay_kill.ts";
import { slowSubscriber } from "./slow_subscriber.ts";
import { stateCorrupt } from "./state_corrupt.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean" },
    only: { type: "string" },
    json: { type: "string" },
    seed: { type: "string" },
    messages: { type: "string" },
    cycles: { type: "string" },
    rounds: { type: "string" },
    corrupt: { type: "string" },
    pause: { type: "string" },
    frames: { type: "string" },
    mls: { type: "string" },
    mcp: { type: "string" },
  },
});
const q = values.quick === true;
const n = (v: string | undefined, full: number, quick: number) =>
  v === undefined ? (q ? quick : full) : Number(v);
const seed = Number(values.seed ?? Date.now() % 100000);
const scenarios: [string, () => Promise<Outcome>][] = [
  ["relay-kill", () => relayKill({ messages: n(values.messages, 10_000, 1_000), seed })],
  ["member-kill", () => memberKill({ cycles: n(values.cycles, 30, 6), seed })],
  ["state-corrupt", () => stateCorrupt({ rounds: n(values.corrupt, 6, 3) })],
  ["commit-race", () => commitRace({ rounds: n(values.rounds, 200, 30), seed })],
  [
    "slow-subscriber",
    () => slowSubscriber({ pauseSeconds: n(values.pause, 30, 5), payloadBytes: 2048 }),
  ],
  ["disk-full", () => diskFull({})],
  ["fuzz", () =>
    fuzz({
      frames: n(values.frames, 60_000, 10_000),
      mls: n(values.mls, 5_000, 500),
      mcp: n(values.mcp, 20_000, 2_000),
      seed,
    })],
  ["attacks", () => attacks()],
];
const only = values.only?.split(",");
const out: Outcome[] = [];
const t0 = Date.now();
process.stderr.write(`faults: seed ${seed}${q ? ", quick" : ""}\n`);
for (const [name, run] of scenarios) {
  if (only && !only.includes(name)) continue;
  process.stderr.write(`faults: ${name}…\n`);
  let o: Outcome;
  try {
    o = await reaping(run);
  } catch (e) {
    o = {
      scenario: name,
      ok: false,
      figures: [{
        name: "scenario crashed",
        value: String((e as Error).message).split("\n")[0]!,
        ok: false,
      }],
      notes: [String((e as Error).stack ?? e).slice(0, 2000)],
      seconds: 0,
    };
  }
  out.push(o);
  const lines = [
    `### ${name}: ${o.scenario} — ${o.ok ? "pass" : "FAIL"} (${o.seconds} s)`,
    "",
    "| figure | value | bar |",
    "| --- | --- | --- |",
  ];
  for (const f of o.figures) lines.push(`| ${f.name} | ${f.value} | ${f.ok ? "ok" : "**FAIL**"} |`);
  for (const note of o.notes) lines.push(`\n> ${note.replaceAll("\n", " ")}`);
  process.stdout.write(lines.join("\n") + "\n\n");
}
const ok = out.every((o) => o.ok);
process.stdout.write(
  `**${ok ? "all pass" : "FAILURES"}** — ${out.length} scenarios, ${
    Math.round((Date.now() - t0) / 1000)
  } s, seed ${seed}\n`,
);
if (values.json) {
  await fsp.writeFile(values.json, JSON.stringify({ seed, ok, outcomes: out }, null, 2));
}
process.exit(ok ? 0 : 1);
