/**
 * 9. Latency in a large channel: send() → receive() in a 100-member channel
 * against the same in a 2-member channel, sender and receiver in this process,
 * a relay process (SQLite log), state in files (the default `FileStore`), one
 * message at a time with the two channels' samples interleaved. The other 98
 * members are real identities added by key package (their managers close once
 * the key package is made), so the sender's and receiver's group states hold a
 * 100-leaf tree. Target (issue 13): the 100-member p50 ≤ 1.5× the 2-member p50.
 *
 * ```sh
 * deno run -A bench/large.ts   # or: node bench/large.ts, bun bench/large.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { percentile, removeDir, startRelayProcess, tempDir } from "./_util.ts";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { MemoryStore } from "../src/store/memory.ts";

const TEXT = "x".repeat(1024);
const SIZE = 100;

async function fill(
  alice: SkytaleChannelManager,
  channel: string,
  endpoint: string,
  n: number,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    const ghost = new SkytaleChannelManager({
      identity: `member-${i}`,
      endpoint,
      store: new MemoryStore(),
    });
    try {
      await alice.addMember(channel, await ghost.keyPackage());
    } finally {
      await ghost.close();
    }
  }
}

/**
 * Measures and reports e2e latency in a 100-member channel against a 2-member one.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const relay = await startRelayProcess("sqlite");
  const dir = await tempDir();
  const alice = new SkytaleChannelManager({ identity: "alice", endpoint: relay.url, dataDir: dir });
  const bob = new SkytaleChannelManager({ identity: "bob", endpoint: relay.url, dataDir: dir });
  try {
    const small = "bench/large/two";
    const large = "bench/large/hundred";
    for (const ch of [small, large]) {
      await alice.create(ch);
      await bob.join(ch, await alice.addMember(ch, await bob.keyPackage()));
    }
    const t0 = performance.now();
    await fill(alice, large, relay.url, SIZE - 2);
    const members = (await bob.roster(large)).length;
    if (members !== SIZE) throw new Error(`Expected ${SIZE} members, bob sees ${members}`);
    h.log(`  filled a ${SIZE}-member channel in ${(performance.now() - t0).toFixed(0)} ms`);
    const once = async (ch: string) => {
      const t = performance.now();
      const got = bob.receive(ch, { timeout: 10 }).then((m) => {
        if (m.length !== 1) throw new Error(`Expected 1 message, got ${m.length}`);
        return performance.now() - t;
      });
      await alice.send(ch, TEXT);
      return await got;
    };
    for (let i = 0; i < 30; i++) {
      await once(small);
      await once(large);
    }
    const samples = h.quick ? 100 : 600;
    const two: number[] = [];
    const hundred: number[] = [];
    for (let i = 0; i < samples; i++) {
      two.push(await once(small));
      hundred.push(await once(large));
    }
    for (const p of [50, 99]) {
      h.report({
        name: `latency p${p}, ${SIZE} members`,
        value: percentile(hundred, p),
        unit: "ms",
        better: Better.lower,
        baseline: { name: `the same, 2 members, p${p}`, value: percentile(two, p) },
        // ≤ 1.5× the 2-member figure: a ratio (baseline / value) ≥ 1 / 1.5.
        ...(p === 50 ? { target: { ratio: 0.67 } } : {}),
        note: `send() → receive(), ${samples} samples each, interleaved; state in files`,
      });
    }
  } finally {
    await alice.close();
    await bob.close();
    await relay.stop();
    await removeDir(dir);
  }
}

if (import.meta.main) await runStandalone("large", run);
