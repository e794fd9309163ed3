/**
 * 5. Membership at the MLS layer: adding one member to a channel of 10, 100
 * and 1,000 members — the adder builds the commit and the Welcome, an existing
 * member processes the commit — and the new member's join from the Welcome
 * (which carries the ratchet tree). Groups are built with all their members
 * added in one commit (`commitAddMany`), as a real channel filled by batched
 * invites would be. Each add starts from the same group state with a fresh key
 * package. Baseline: the same operations on the same group with ts-mls'
 * default crypto provider. Target (issue 13): add to 1,000 members ≤ 100 ms.
 *
 * ```sh
 * deno run -A bench/membership.ts   # or: node bench/membership.ts, bun bench/membership.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { percentile } from "./_util.ts";
import { MlsEngine } from "../src/mls/engine.ts";
import { tsMlsDefaultProvider } from "../src/mls/provider.ts";

interface Built {
  alice: Uint8Array;
  bob: Uint8Array;
}

async function build(mls: MlsEngine, size: number): Promise<Built> {
  const g = await mls.createGroup(new TextEncoder().encode(`bench/members/${size}`), "alice");
  const bob = await mls.newKeyPackage("bob");
  const kps = [bob.keyPackage];
  for (let i = 2; i < size; i++) kps.push((await mls.newKeyPackage(`member-${i}`)).keyPackage);
  const r = await mls.commitAddMany(g, kps);
  const { group } = await mls.join(r.welcome, [bob]);
  if (mls.members(r.newGroup).length !== size) throw new Error("Wrong group size");
  return { alice: mls.encodeGroup(r.newGroup), bob: mls.encodeGroup(group) };
}

/** One add: commit + Welcome by alice, commit processed by bob, join by the new member. */
async function addOnce(
  mls: MlsEngine,
  b: Built,
  n: number,
): Promise<{ add: number; join: number; welcomeBytes: number }> {
  const alice = mls.decodeGroup(b.alice);
  const bob = mls.decodeGroup(b.bob);
  const newcomer = await mls.newKeyPackage(`newcomer-${n}`);
  const t0 = performance.now();
  const r = await mls.commitAdd(alice, newcomer.keyPackage);
  const p = await mls.process(bob, r.commit);
  const t1 = performance.now();
  if (p.kind !== "commit") throw new Error("Expected a commit");
  await mls.join(r.welcome, [newcomer]);
  const t2 = performance.now();
  return { add: t1 - t0, join: t2 - t1, welcomeBytes: r.welcome.length };
}

/**
 * Measures and reports member addition and join at three group sizes.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  const ours = await MlsEngine.create();
  const theirs = await MlsEngine.create(undefined, { provider: tsMlsDefaultProvider });
  for (const size of h.quick ? [10, 100] : [10, 100, 1000]) {
    const t0 = performance.now();
    const built = await build(ours, size);
    h.log(`  built a ${size}-member group in ${(performance.now() - t0).toFixed(0)} ms`);
    const reps = h.quick ? 2 : size >= 1000 ? 4 : 8;
    await addOnce(ours, built, -1); // warm-up
    await addOnce(theirs, built, -2);
    const a: { add: number; join: number; welcomeBytes: number }[] = [];
    const b: { add: number; join: number }[] = [];
    for (let i = 0; i < reps; i++) {
      a.push(await addOnce(ours, built, 2 * i));
      b.push(await addOnce(theirs, built, 2 * i + 1));
    }
    const med = (xs: number[]) => percentile(xs, 50);
    h.report({
      name: `add to ${size} (commit+process+Welcome)`,
      value: med(a.map((x) => x.add)),
      unit: "ms",
      better: Better.lower,
      baseline: { name: "ts-mls default provider", value: med(b.map((x) => x.add)) },
      ...(size === 1000 ? { target: { value: 100 } } : {}),
      note: `median of ${reps}; Welcome ${a[0]!.welcomeBytes} bytes (carries the tree)`,
    });
    h.report({
      name: `join ${size + 1}-member group`,
      value: med(a.map((x) => x.join)),
      unit: "ms",
      better: Better.lower,
      baseline: { name: "ts-mls default provider", value: med(b.map((x) => x.join)) },
      note: `median of ${reps}`,
    });
  }
}

if (import.meta.main) await runStandalone("membership", run);
