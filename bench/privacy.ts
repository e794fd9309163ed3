/**
 * What privacy costs (issue 17): padding to size buckets (a 100-byte message
 * padded to 256 B, against ts-mls' default padding) and the post-quantum suite
 * (X-Wing) against suite 1 for a message pair and for adding a member.
 *
 * ```sh
 * deno run -A bench/privacy.ts   # or: node bench/privacy.ts, bun bench/privacy.ts
 * ```
 *
 * @module
 */
import { Better, type Harness, runStandalone } from "./_harness.ts";
import { DEFAULT_SUITE, type Group, MlsEngine } from "../src/mls/engine.ts";

const PQ = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";
const BUCKETS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768];
const bucket = (n: number) => BUCKETS.find((b) => b >= n) ?? Math.ceil(n / 32768) * 32768;

async function pair(suite: string, size: number, padded: boolean): Promise<() => Promise<void>> {
  const mls = await MlsEngine.create(suite);
  const bob = await mls.newKeyPackage("bob", await mls.newIdentityKey());
  const g = await mls.createGroup(
    new TextEncoder().encode("bench/privacy/pair"),
    "alice",
    await mls.newIdentityKey(),
  );
  const added = await mls.commitAdd(g, bob.keyPackage);
  let alice: Group = added.newGroup;
  let bobGroup: Group = (await mls.join(added.welcome, [bob])).group;
  const data = crypto.getRandomValues(new Uint8Array(size));
  return async () => {
    const { message, newGroup } = await mls.encrypt(alice, data, padded ? { pad: bucket } : {});
    alice = newGroup;
    const r = await mls.process(bobGroup, message);
    if (r.kind !== "application") throw new Error("Bad round trip");
    bobGroup = r.newGroup;
  };
}

async function add(suite: string): Promise<() => Promise<void>> {
  const mls = await MlsEngine.create(suite);
  const g = await mls.createGroup(
    new TextEncoder().encode("bench/privacy/add"),
    "alice",
    await mls.newIdentityKey(),
  );
  return async () => {
    const bob = await mls.newKeyPackage("bob", await mls.newIdentityKey());
    const added = await mls.commitAdd(g, bob.keyPackage);
    await mls.join(added.welcome, [bob]);
  };
}

/**
 * Measures and reports padding and post-quantum costs.
 *
 * @param h The harness.
 * @returns When reported.
 */
export async function run(h: Harness): Promise<void> {
  {
    const [a, b] = await h.compare(
      await pair(DEFAULT_SUITE, 100, true),
      await pair(DEFAULT_SUITE, 100, false),
    );
    h.report({
      name: "pair 100 B padded to 256 B",
      value: a.ms,
      unit: "ms",
      better: Better.lower,
      baseline: { name: "ts-mls default padding", value: b.ms },
      note: "encrypt + process; the cost of padding to a size bucket",
    });
  }
  {
    const [a, b] = await h.compare(
      await pair(PQ, 1024, true),
      await pair(DEFAULT_SUITE, 1024, true),
    );
    h.report({
      name: "pair 1 KiB, post-quantum suite",
      value: a.ms,
      unit: "ms",
      better: Better.lower,
      baseline: { name: "suite 1", value: b.ms },
      note: `${PQ}, encrypt + process`,
    });
  }
  {
    const [a, b] = await h.compare(await add(PQ), await add(DEFAULT_SUITE));
    h.report({
      name: "add a member, post-quantum suite",
      value: a.ms,
      unit: "ms",
      better: Better.lower,
      baseline: { name: "suite 1", value: b.ms },
      note: "key package + commit + Welcome + join, 2-member group",
    });
  }
}

if (import.meta.main) await runStandalone("privacy", run);
