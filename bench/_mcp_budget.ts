/**
 * The latency budget of an MCP round trip over `SkytaleTransport`, for
 * `bench/mcp_transport.ts`: per call, when the request and the response
 * reached each stage, from the client's side. Client stages are stamped in the
 * bench process (the manager's probes, `src/_probe.ts`, and a wrapper around
 * the manager and the transport that notes when a frame was sealed, tapped and
 * opened); relay stages in the relay process (`SKYTALE_BENCH_PROBES`), the
 * serving side's in the server process (the same probes, written by
 * `bench/_mcp_direct.ts`). All on the wall clock.
 *
 * @module
 */
import { Better, type Harness } from "./_harness.ts";
import { percentile } from "./_util.ts";
import { type ProbeRecording, type ProbeStamp, recordProbes, Stages } from "../src/_probe.ts";
import type { McpTransport, TaggedChannels } from "../src/mcp/transport.ts";

/** The stages of a round trip, in order, with what each step covers. */
const PATH: [label: string, step: string][] = [
  ["sealed", "client: SDK and transport encode, seal the frame (AES-GCM)"],
  [`req ${Stages.reserved}`, "request: journal reservation (1 in 64 flushes)"],
  [`req ${Stages.encrypted}`, "request: MLS encrypt"],
  [`req ${Stages.relayReceived}`, "request: publish to the relay"],
  [`req ${Stages.relayStored}`, "request: relay log append"],
  [`req ${Stages.relayFannedOut}`, "request: relay fan-out"],
  [`req ${Stages.arrived}`, "server: the request arrives at its manager"],
  [`req ${Stages.decrypted}`, "server: MLS decrypt"],
  [`req ${Stages.buffered}`, "server: applied, journaled (no flush)"],
  [`resp ${Stages.reserved}`, "server: open, McpServer answers, seal, reserve"],
  [`resp ${Stages.encrypted}`, "server: MLS encrypt"],
  [`resp ${Stages.relayReceived}`, "response: publish to the relay"],
  [`resp ${Stages.relayStored}`, "response: relay log append"],
  [`resp ${Stages.arrived}`, "response: relay fan-out, arrives at the client's manager"],
  [`resp ${Stages.decrypted}`, "response: MLS decrypt"],
  [`resp ${Stages.buffered}`, "response: applied, journaled (no flush)"],
  ["tapped", "response: handed to the transport"],
  ["opened", "client: frame opened (AES-GCM), handed to the SDK"],
  ["returned", "client: SDK resolves callTool"],
];

type Sample = Map<string, number>;

const wall = () => performance.timeOrigin + performance.now();

/** Collects the stages of round trips, one call at a time. */
export class RoundTripBudget {
  #rec: ProbeRecording | undefined;
  #first = 0;
  #marks: [string, number][] = [];
  #wall0 = 0;
  #samples: { wall0: number; marks: [string, number][]; stamps: ProbeStamp[] }[] = [];

  /**
   * Wraps a manager so that handing a frame over and receiving one are stamped.
   *
   * @param mgr The client's manager.
   * @returns The same manager, stamped.
   */
  channels(mgr: TaggedChannels): TaggedChannels {
    return {
      identity: mgr.identity,
      whoami: () => mgr.whoami(),
      roster: (c) => mgr.roster(c),
      openSealed: (b, i, a) => mgr.openSealed(b, i, a),
      sendTagged: (c, t, d) => {
        this.#mark("sealed");
        return mgr.sendTagged(c, t, d);
      },
      onTagged: (c, t, h) =>
        mgr.onTagged(c, t, (d) => {
          this.#mark("tapped");
          h(d);
        }),
    };
  }

  /**
   * Stamps each message the transport hands to the SDK (call after `connect`).
   *
   * @param t The connected transport.
   */
  watch(t: McpTransport): void {
    const deliver = t.onmessage;
    t.onmessage = (m) => {
      this.#mark("opened");
      deliver?.(m);
    };
  }

  /** Starts recording (probes on from here). */
  start(): void {
    this.#rec = recordProbes();
  }

  /** Stops recording. */
  stop(): void {
    this.#rec?.stop();
    this.#rec = undefined;
  }

  /**
   * Times one call.
   *
   * @param call The call.
   * @returns When it returned.
   */
  async time(call: () => Promise<void>): Promise<void> {
    if (!this.#rec) return await call();
    this.#marks = [];
    this.#first = this.#rec.stamps.length;
    this.#wall0 = wall();
    await call();
    this.#mark("returned");
    const stamps = this.#rec.stamps.slice(this.#first);
    this.#samples.push({ wall0: this.#wall0, marks: this.#marks, stamps });
  }

  #mark(label: string): void {
    if (this.#rec) this.#marks.push([label, wall()]);
  }

  /**
   * One sample's stages: the request is what this process encrypted, the
   * response what arrived. A stage of a message comes from the process that
   * did it: this one sends the request and receives the response, the server
   * the other way round, the relay its own (a manager also stamps its own
   * messages coming back, which are not on the path).
   */
  #sample(
    s: { wall0: number; marks: [string, number][]; stamps: ProbeStamp[] },
    relay: Map<string, ProbeStamp[]>,
    server: Map<string, ProbeStamp[]>,
  ): Sample {
    const out: Sample = new Map();
    for (const [label, at] of s.marks) if (!out.has(label)) out.set(label, at);
    const req = s.stamps.find((x) => x[0] === Stages.encrypted)?.[1];
    const tapped = out.get("tapped") ?? Infinity;
    const resp = s.stamps.findLast((x) =>
      x[0] === Stages.buffered && x[1] !== req && x[2] <= tapped
    )?.[1];
    const sending: string[] = [Stages.reserved, Stages.encrypted];
    const receiving: string[] = [Stages.arrived, Stages.decrypted, Stages.buffered];
    for (const [prefix, id] of [["req", req], ["resp", resp]] as const) {
      if (id === undefined) continue;
      const [mine, theirs] = prefix === "req" ? [sending, receiving] : [receiving, sending];
      const from = [
        ...s.stamps.filter((x) => mine.includes(x[0])),
        ...(server.get(id) ?? []).filter((x) => theirs.includes(x[0])),
        ...(relay.get(id) ?? []),
      ];
      for (const [stage, sid, at] of from) {
        const label = `${prefix} ${stage}`;
        if (sid === id && !out.has(label)) out.set(label, at);
      }
    }
    return out;
  }

  /**
   * Reports the budget: per stage the step from the stage before, median and p99.
   *
   * @param h The harness.
   * @param relayFile The relay's probe file, if it wrote one.
   * @param serverFile The serving process's probe file, if it wrote one.
   */
  report(h: Harness, relayFile: Uint8Array | undefined, serverFile?: Uint8Array): void {
    if (this.#samples.length === 0) return;
    const byId = (file: Uint8Array | undefined) => {
      const m = new Map<string, ProbeStamp[]>();
      const stamps = file ? JSON.parse(new TextDecoder().decode(file)) as ProbeStamp[] : [];
      for (const st of stamps) m.set(st[1], [...(m.get(st[1]) ?? []), st]);
      return m;
    };
    const relay = byId(relayFile);
    const server = byId(serverFile);
    if (!relayFile) h.log("  (no relay probe file: relay stages left out)");
    if (!serverFile) h.log("  (no server probe file: the serving side is one step)");
    const samples = this.#samples.map((s) => ({
      wall0: s.wall0,
      at: this.#sample(s, relay, server),
    }));
    const rows: string[][] = [["stage", "step p50", "p99", "since call p50", "what"]];
    for (const [i, [label, what]] of PATH.entries()) {
      const step: number[] = [];
      const since: number[] = [];
      for (const s of samples) {
        const t = s.at.get(label);
        if (t === undefined) continue;
        since.push(t - s.wall0);
        const prev = PATH.slice(0, i).map(([l]) => s.at.get(l)).findLast((x) => x !== undefined);
        step.push(t - (prev ?? s.wall0));
      }
      if (step.length === 0) continue;
      const [s50, s99, p50] = [percentile(step, 50), percentile(step, 99), percentile(since, 50)];
      rows.push([label, s50.toFixed(3), s99.toFixed(3), p50.toFixed(3), what]);
      h.report({
        name: `round trip budget: ${label}`,
        value: s50,
        unit: "ms",
        better: Better.lower,
        note: `${what}; median of ${step.length}, p99 ${s99.toFixed(3)} ms; ${
          p50.toFixed(3)
        } ms after the call`,
      });
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    h.log(`  tools/call round trip budget over SkytaleTransport (ms, ${samples.length} calls):`);
    for (const r of rows) {
      h.log(
        "    " +
          r.map((c, i) => i === 0 || i === 4 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(
            "  ",
          ),
      );
    }
  }
}
