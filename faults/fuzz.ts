// Attack: fuzz the relay's frame decoder, the MLS message paths (KeyPackage,
// Welcome, application, commit) and every MCP tool's arguments with random,
// truncated and bit-flipped input (fast-check). Every case must end in a
// result or a SkytaleError (a clear error), within a bound, and leave stored
// state as it was.
import fc from "fast-check";
import fsp from "node:fs/promises";
import path from "node:path";
import { SkytaleChannelManager } from "../src/channel/manager.ts";
import { SkytaleError } from "../src/errors.ts";
import { bytesEqual } from "../src/_util.ts";
import { Client, InMemoryTransport } from "../src/mcp/_sdk.ts";
import { createMcpServer } from "../src/mcp/server.ts";
import { MlsEngine } from "../src/mls/engine.ts";
import { MemoryLog } from "../src/relay/log/memory.ts";
import { decodeFrame, encodeFrame, type Frame } from "../src/relay/protocol.ts";
import { startRelay } from "../src/relay/server.ts";
import { type Outcome, readTree, Report, tempDir } from "./_harness.ts";

/** Options of {@linkcode fuzz}. */
export interface FuzzOptions {
  /** Cases for the frame decoder. */
  frames: number;
  /** Cases per MLS path (4 paths). */
  mls: number;
  /** Cases over the MCP tools. */
  mcp: number;
  seed?: number;
}

/** Arbitrary damage to a valid sample: bit flips, truncation, extension, or random bytes. */
function mutated(samples: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const sample = fc.constantFrom(...samples);
  const flip = fc.tuple(
    sample,
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 4 }),
  )
    .map(([s, flips]) => {
      const c = s.slice();
      for (const [i, bit] of flips) c[i % c.length]! ^= 1 << bit;
      return c;
    });
  const cut = fc.tuple(sample, fc.nat()).map(([s, n]) => s.slice(0, n % s.length));
  const extend = fc.tuple(sample, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([s, x]) => {
    const c = new Uint8Array(s.length + x.length);
    c.set(s);
    c.set(x, s.length);
    return c;
  });
  const random = fc.uint8Array({ maxLength: 512 });
  return fc.oneof({ weight: 4, arbitrary: flip }, { weight: 2, arbitrary: cut }, extend, random);
}

function clearError(e: unknown): boolean {
  return e instanceof SkytaleError && typeof e.code === "string" && e.message.length > 0;
}

/** Runs the fuzzers; returns one outcome with a figure per target. */
export async function fuzz(o: FuzzOptions): Promise<Outcome> {
  const r = new Report("fuzzing (fast-check)");
  const seed = o.seed ?? 7;
  const t0 = Date.now();
  let total = 0;
  const bad: string[] = [];

  // 1. The relay's frame decoder.
  const frames: Frame[] = [
    { type: "hello", reqId: 1, token: "tok" },
    { type: "create", reqId: 2, channel: "a/b/c" },
    { type: "subscribe", reqId: 3, channel: "a/b/c", from: { seq: 5 } },
    { type: "subscribe", reqId: 3, channel: "a/b/c", from: { epoch: 2 } },
    {
      type: "publish",
      reqId: 4,
      channel: "a/b/c",
      id: new Uint8Array(16),
      kind: "commit",
      epoch: 5,
      payload: new Uint8Array([1, 2, 3]),
    },
    {
      type: "deliver",
      channel: "a/b/c",
      seq: 9,
      epoch: 1,
      kind: "application",
      time: 1,
      id: new Uint8Array(16),
      payload: new Uint8Array(40),
    },
    {
      type: "mailboxPut",
      reqId: 5,
      address: "wel:x",
      id: new Uint8Array(16),
      ttl: 60,
      payload: new Uint8Array(8),
    },
    {
      type: "mailboxItems",
      reqId: 6,
      items: [{ id: new Uint8Array(16), payload: new Uint8Array(3) }],
    },
    { type: "error", reqId: 7, code: "limit", message: "m" },
    { type: "ack", reqId: 8, seq: 1, epoch: 1 },
  ];
  let frameErrors = 0;
  await fc.assert(
    fc.property(mutated(frames.map(encodeFrame)), (b) => {
      total++;
      try {
        decodeFrame(b);
      } catch (e) {
        frameErrors++;
        if (!clearError(e)) bad.push(`decodeFrame: ${String(e)}`);
      }
    }),
    { numRuns: o.frames, seed },
  );
  const lap = (what: string) => r.note(`${what} done at ${Math.round((Date.now() - t0) / 1000)} s`);
  lap("frame decoder");
  r.fig(
    "frame decoder cases (refused / decoded)",
    `${o.frames} (${frameErrors} / ${o.frames - frameErrors})`,
  );

  // 2. MLS paths.
  const mls = await MlsEngine.create();
  const enc = new TextEncoder();
  const alice = await mls.createGroup(enc.encode("fuzz/mls/group"), "alice");
  const bobKp = await mls.newKeyPackage("bob");
  const added = await mls.commitAdd(alice, bobKp.keyPackage);
  const a1 = added.newGroup;
  const { group: b1 } = await mls.join(added.welcome, [bobKp]);
  const app = await mls.encrypt(a1, enc.encode("fuzz marker"));
  const upd = await mls.commitUpdate(a1);
  const carolKp = await mls.newKeyPackage("carol");
  const carolAdd = await mls.commitAdd(a1, carolKp.keyPackage);
  const bBytes = mls.encodeGroup(b1);
  const aBytes = mls.encodeGroup(a1);
  const unchanged = (g: typeof b1, before: Uint8Array) => bytesEqual(mls.encodeGroup(g), before);
  // Each case gets its own copy of the group (MLS states share secret arrays that ts-mls zeroes
  // in place, so a damaged input that still decodes to a valid message, e.g. two flips of the
  // same bit, legitimately changes the group it was applied to). A refused input must leave its
  // copy unchanged.
  const mlsPath = async (
    name: string,
    samples: Uint8Array[],
    before: Uint8Array | undefined,
    run: (g: typeof b1 | undefined, b: Uint8Array) => Promise<unknown>,
  ) => {
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(mutated(samples), async (b) => {
        total++;
        const g = before && mls.decodeGroup(before);
        try {
          await run(g, b);
        } catch (e) {
          refused++;
          if (!clearError(e)) bad.push(`${name}: ${String(e).slice(0, 200)}`);
          if (g && before && !unchanged(g, before)) bad.push(`${name}: the group state changed`);
        }
      }),
      { numRuns: o.mls, seed },
    );
    r.fig(`MLS ${name} cases (refused)`, `${o.mls} (${refused})`);
  };
  await mlsPath("application message", [app.message], bBytes, (g, b) => mls.process(g!, b));
  await mlsPath(
    "commit",
    [upd.commit, carolAdd.commit],
    bBytes,
    (g, b) => mls.process(g!, b),
  );
  await mlsPath(
    "KeyPackage (commitAdd)",
    [carolKp.keyPackage],
    aBytes,
    (g, b) => mls.commitAdd(g!, b),
  );
  await mlsPath("Welcome (join)", [carolAdd.welcome], undefined, (_g, b) => mls.join(b, [carolKp]));

  lap("MLS");
  // 3. Every MCP tool's arguments, through a real MCP client and server.
  const relay = await startRelay({ hostname: "127.0.0.1", port: 0, log: new MemoryLog() });
  const dir = await tempDir("skytale-fuzz-mcp-");
  const manager = new SkytaleChannelManager({
    identity: "alice",
    endpoint: relay.url,
    dataDir: dir,
  });
  const known = "fuzz/mcp/known";
  await manager.create(known);
  const kpHex = await new SkytaleChannelManager({
    identity: "bob",
    endpoint: relay.url,
    dataDir: dir,
  }).keyPackage();
  const server = createMcpServer(manager, { toolTimeoutSeconds: 10 });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await server.connect(st);
  const client = new Client({ name: "fuzz", version: "0" });
  await client.connect(ct);
  const alicePath = path.join(dir, "alice");
  const snapshot = async () => {
    const t = await readTree(alicePath);
    return [...t].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}:${v.toHex()}`).join(
      "|",
    );
  };
  let state = await snapshot();
  const hexish = (s: string) => mutated([Uint8Array.fromHex(s)]).map((b) => b.toHex());
  const junk = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom(
      "",
      "a/b",
      "a/b/c/d",
      "a//c",
      "../../x/y",
      "a/b/c\u0000",
      " a/b/c",
      "x".repeat(300),
    ),
    fc.integer(),
    fc.double(),
    fc.constant(null),
    fc.array(fc.string(), { maxLength: 2 }),
    fc.object({ maxDepth: 1 }),
  );
  const channel = fc.oneof(junk, fc.constant(known), fc.constantFrom("fuzz/mcp/unknown", "o/n/s"));
  const tools: [string, fc.Arbitrary<Record<string, unknown>>][] = [
    ["skytale_create_channel", fc.record({ channel: junk }, { requiredKeys: [] })],
    ["skytale_key_package", fc.oneof(fc.constant({}), fc.record({ extra: junk }))],
    [
      "skytale_add_member",
      fc.record({ channel, key_package_hex: fc.oneof(junk, hexish(kpHex)) }, { requiredKeys: [] }),
    ],
    [
      "skytale_join_channel",
      fc.record({ channel, welcome_hex: fc.oneof(junk, hexish(kpHex)) }, { requiredKeys: [] }),
    ],
    [
      "skytale_send",
      fc.record({ channel: fc.oneof(junk, fc.constant("fuzz/mcp/unknown")), message: junk }, {
        requiredKeys: [],
      }),
    ],
    [
      "skytale_receive",
      fc.record({
        channel: fc.oneof(junk, fc.constant("fuzz/mcp/unknown")),
        timeout: fc.oneof(junk, fc.integer({ min: -5, max: 1000 })),
      }, { requiredKeys: [] }),
    ],
    ["skytale_channels", fc.oneof(fc.constant({}), fc.record({ extra: junk }))],
    [
      "skytale_invite",
      fc.record({ channel: fc.oneof(junk, fc.constant("fuzz/mcp/unknown")) }, { requiredKeys: [] }),
    ],
    [
      "skytale_join_with_token",
      fc.record({
        channel,
        token: fc.oneof(
          junk,
          fc.constantFrom("skt_inv_", "skt_inv_AAAA", "skt_inv_" + "A".repeat(200)),
        ),
      }, { requiredKeys: [] }),
    ],
    ["skytale_members", fc.record({ channel }, { requiredKeys: [] })],
    [
      "skytale_remove_member",
      fc.record({ channel, identity: fc.oneof(junk, fc.constantFrom("alice", "bob", "")) }, {
        requiredKeys: [],
      }),
    ],
    [
      "skytale_leave",
      fc.record({ channel: fc.oneof(junk, fc.constant("fuzz/mcp/unknown")) }, { requiredKeys: [] }),
    ],
  ];
  const perTool = new Map<string, { n: number; err: number }>();
  let successes = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(...tools.map(([n, a]) => a.map((args) => [n, args] as const))),
      async ([name, args]) => {
        total++;
        const stat = perTool.get(name) ?? { n: 0, err: 0 };
        perTool.set(name, stat);
        stat.n++;
        let res: { isError?: boolean; content?: unknown } | undefined;
        let thrown: unknown;
        let t: ReturnType<typeof setTimeout> | undefined;
        const timer = new Promise<"hang">((res) => t = setTimeout(() => res("hang"), 15_000));
        const call = client.callTool({ name, arguments: args }).then((x) => {
          res = x as typeof res;
        }, (e) => {
          thrown = e;
        });
        const raced = await Promise.race([call, timer]);
        clearTimeout(t);
        if (raced === "hang") {
          bad.push(`${name} ${JSON.stringify(args).slice(0, 120)}: no answer in 15 s`);
          return;
        }
        const text = JSON.stringify(res?.content ?? String(thrown));
        if (thrown !== undefined || res?.isError) {
          stat.err++;
          if (/failed unexpectedly|bug in the Skytale/.test(text)) {
            bad.push(`${name} ${JSON.stringify(args).slice(0, 120)}: ${text.slice(0, 200)}`);
          }
          const now = await snapshot();
          if (now !== state) {
            bad.push(
              `${name} ${JSON.stringify(args).slice(0, 120)}: refused but stored state changed`,
            );
            state = now;
          }
        } else {
          successes++;
          if (name === "skytale_key_package") {
            // A valid call made a key package: drop it, so the store stays small.
            const kps = path.join(alicePath, "keypackages");
            for (const f of await fsp.readdir(kps)) await fsp.rm(path.join(kps, f));
          }
          // A valid call may leave a record to be written later (durability per burst): write it
          // now, so a change seen after a refused call is the refused call's.
          await manager.flush();
          state = await snapshot();
        }
      },
    ),
    { numRuns: o.mcp, seed },
  );
  r.fig(
    "MCP tool calls (refused with isError or a JSON-RPC error)",
    `${o.mcp} (${
      [...perTool.values()].reduce((n, s) => n + s.err, 0)
    }; ${successes} valid calls succeeded)`,
  );
  r.fig("tools covered", perTool.size, perTool.size === tools.length);
  await client.close();
  await manager.close();
  await relay.close();
  await fsp.rm(dir, { recursive: true, force: true });
  r.fig("total cases", total);
  r.fig("crashes, hangs, unclear errors or state changes", bad.length, bad.length === 0);
  for (const b of bad.slice(0, 8)) r.note(b);
  return r.done();
}
