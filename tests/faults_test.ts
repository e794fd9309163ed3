// Quick versions of the fault scenarios of `deno task faults` (faults/*.ts):
// small sizes, same checks. The full runs and their figures are in
// docs/RELIABILITY.md.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Outcome } from "../faults/_harness.ts";
import { commitRace } from "../faults/commit_race.ts";
import { diskFull } from "../faults/disk_full.ts";
import { memberKill } from "../faults/member_kill.ts";
import { relayKill } from "../faults/relay_kill.ts";
import { slowSubscriber } from "../faults/slow_subscriber.ts";
import { type Proc, reaping, startRelayProcess } from "./_helpers.ts";

function pass(o: Outcome): void {
  const failed = o.figures.filter((f) => !f.ok).map((f) => `${f.name}: ${f.value}`);
  assert.deepEqual(failed, [], `${o.scenario}\n${o.notes.join("\n")}`);
}

test("3 senders lose nothing and duplicate nothing while the relay is SIGKILLed", async () => {
  // A kill every 0.45-2.5 s: a reconnect now takes a membership proof too (hello, prove, then
  // the channel's commits re-read by the restarted relay), so 0.2-1.2 s left too little time.
  pass(await reaping(() => relayKill({ messages: 300, killEveryMs: 1500, seed: 11 })));
});

test("a member SIGKILLed mid-send, mid-commit or before joining loses nothing acked and reuses no key", async () => {
  pass(await reaping(() => memberKill({ cycles: 3, seed: 12 })));
});

test("three members committing concurrently get one commit per epoch and converge", async () => {
  pass(await reaping(() => commitRace({ rounds: 15, seed: 13 })));
});

test("a subscriber that stops reading does not grow the relay without bound and resumes from the log", async () => {
  pass(await reaping(() => slowSubscriber({ pauseSeconds: 3, payloadBytes: 2048 })));
});

test("a relay whose disk is full refuses publishes with an error and keeps what it acked", async () => {
  pass(await reaping(() => diskFull({})));
});

test("a scenario that fails leaves no relay or agent process behind", async () => {
  let relay: Proc | undefined;
  await assert.rejects(
    reaping(async () => {
      relay = (await startRelayProcess(["--store", "memory"])).proc;
      throw new Error("scenario failed");
    }),
    /scenario failed/,
  );
  assert.ok(relay, "the relay started");
  assert.ok(relay.child.exitCode !== null || relay.child.signalCode !== null, "still running");
});
