/**
 * The benchmark harness: times code, prints a table and merges the figures
 * into `bench/results/latest.json`.
 *
 * ## Writing a benchmark module
 * A module is a file `bench/<name>.ts` (no leading `_`) that exports
 *
 * ```ts
 * export async function run(h: Harness): Promise<void>
 * ```
 *
 * and ends with `if (import.meta.main) await runStandalone("<name>", run);` so
 * that `deno run -A bench/<name>.ts`, `node bench/<name>.ts` and
 * `bun bench/<name>.ts` run it alone. `bench/main.ts` (`deno task bench`) finds
 * every such module and runs them one after another in one process, in name
 * order; `bench/main.ts mls relay` runs only the modules named.
 *
 * Inside `run`, measure with {@linkcode Harness.time} (or your own clock) and
 * hand every figure to {@linkcode Harness.report}, with the baseline measured
 * in the same run and the target from the issue, if any. Measure the baseline
 * and the candidate interleaved ({@linkcode Harness.compare}) so that noise
 * from other processes on the machine hits both alike. Log with `h.log`, not
 * `console`. Pass `--quick` for shorter runs (smoke tests).
 *
 * ## Output
 * A table on stderr, one line per figure, and `bench/results/latest.json`:
 * `{ results: { [runtime]: { [module]: { time, runtime, rows } } } }` — a run
 * replaces the entries of the modules it ran on its runtime and keeps the rest.
 *
 * @module
 */
import { cliArgs, logLine, runtime } from "../src/runtime/env.ts";
import { ensureDir, readFileIfExists, writeFileAtomic } from "../src/runtime/fs.ts";

/** Whether a smaller or a larger value is better. */
export const Better = { lower: "lower", higher: "higher" } as const;
/** The type of {@linkcode Better}. */
export type Better = (typeof Better)[keyof typeof Better];

/** One figure of a benchmark. */
export interface BenchRow {
  /** What was measured, e.g. `pair 1 KiB`. */
  name: string;
  /** The figure. */
  value: number;
  /** Its unit, e.g. `ms`, `msg/s`. */
  unit: string;
  /** Whether lower or higher is better. */
  better: Better;
  /** The baseline measured in the same run, in the same unit. */
  baseline?: { name: string; value: number };
  /**
   * The target: a minimum `ratio` to the baseline (as {@linkcode ratioOf}
   * computes it: above 1 is better than the baseline), and/or an absolute `value`.
   */
  target?: { ratio?: number; value?: number };
  /** A short remark (e.g. iterations, what the baseline is). */
  note?: string;
}

/** A row as stored: with its ratio to the baseline and whether it met its target. */
export interface StoredRow extends BenchRow {
  /** How many times better than the baseline (> 1 is better), if there is one. */
  ratio?: number;
  /** Whether every target was met, if there is one. */
  met?: boolean;
}

/** What {@linkcode Harness.time} measured. */
export interface Timing {
  /** Median time of one operation over the samples, in milliseconds. */
  ms: number;
  /** Operations per second from {@linkcode Timing.ms}. */
  perSecond: number;
  /** Operations timed in all (warm-up excluded). */
  iterations: number;
  /** Per-operation time of each sample batch, in milliseconds. */
  samples: number[];
}

/** Options for {@linkcode Harness.time}. */
export interface TimeOptions {
  /** Operations per sample batch (default: enough for ~20 ms). */
  batch?: number;
  /** Sample batches (default 15, 5 with `--quick`). */
  samples?: number;
  /** Operations run before timing (default: one batch). */
  warmup?: number;
}

/** What a benchmark module gets from the harness. */
export interface Harness {
  /** The runtime running the benchmarks. */
  readonly runtime: "deno" | "node" | "bun";
  /** Whether `--quick` was given: fewer samples, for smoke runs. */
  readonly quick: boolean;
  /**
   * Times an operation: warm-up, then batches of calls, one after another.
   *
   * @param op The operation (awaited if it returns a promise).
   * @param options Batch size, sample count, warm-up.
   * @returns The median per-operation time and the samples.
   */
  time(op: () => unknown, options?: TimeOptions): Promise<Timing>;
  /**
   * Times two operations with their batches interleaved (a, b, a, b, …), so
   * that load from elsewhere on the machine hits both alike.
   *
   * @param a The first operation (e.g. the candidate).
   * @param b The second operation (e.g. the baseline).
   * @param options As for {@linkcode Harness.time}, applied to both.
   * @returns The timing of each.
   */
  compare(a: () => unknown, b: () => unknown, options?: TimeOptions): Promise<[Timing, Timing]>;
  /**
   * Records a figure for the table and the JSON file.
   *
   * @param row The figure, with its baseline and target if any.
   */
  report(row: BenchRow): void;
  /**
   * Writes a progress line to stderr.
   *
   * @param line The text.
   */
  log(line: string): void;
}

/** A benchmark module's entry point. */
export type BenchRun = (h: Harness) => Promise<void>;

/**
 * How many times better than the baseline a row is: baseline/value when lower
 * is better, value/baseline when higher is.
 *
 * @param row The row.
 * @returns The ratio, or `undefined` without a usable baseline.
 */
export function ratioOf(row: BenchRow): number | undefined {
  const b = row.baseline?.value;
  if (b === undefined || !(b > 0) || !(row.value > 0)) return undefined;
  return row.better === Better.lower ? b / row.value : row.value / b;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function runBatch(op: () => unknown, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = op();
    if (r instanceof Promise) await r;
  }
  return performance.now() - t0;
}

async function calibrate(op: () => unknown): Promise<number> {
  // Grow the batch until it takes ~20 ms (also serves as warm-up).
  let n = 1;
  for (;;) {
    const ms = await runBatch(op, n);
    if (ms >= 20 || n >= 1 << 16) return n;
    n = ms < 1 ? n * 8 : Math.max(n + 1, Math.ceil((n * 20) / ms));
  }
}

function fmt(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString("en-US");
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  if (a >= 1) return x.toFixed(3);
  return x.toPrecision(3);
}

/** Collects the rows of one run; prints and stores them. */
class Run implements Harness {
  readonly runtime = runtime;
  readonly quick: boolean;
  readonly rows = new Map<string, StoredRow[]>();
  current = "";

  constructor(quick: boolean) {
    this.quick = quick;
  }

  async time(op: () => unknown, o: TimeOptions = {}): Promise<Timing> {
    const [t] = await this.#timeAll([op], o);
    return t!;
  }

  async compare(
    a: () => unknown,
    b: () => unknown,
    o: TimeOptions = {},
  ): Promise<[Timing, Timing]> {
    const [ta, tb] = await this.#timeAll([a, b], o);
    return [ta!, tb!];
  }

  async #timeAll(ops: (() => unknown)[], o: TimeOptions): Promise<Timing[]> {
    const batches: number[] = [];
    for (const op of ops) {
      const n = o.batch ?? await calibrate(op);
      await runBatch(op, o.warmup ?? n);
      batches.push(n);
    }
    const count = o.samples ?? (this.quick ? 5 : 15);
    const samples: number[][] = ops.map(() => []);
    for (let s = 0; s < count; s++) {
      for (let i = 0; i < ops.length; i++) {
        samples[i]!.push((await runBatch(ops[i]!, batches[i]!)) / batches[i]!);
      }
    }
    return samples.map((xs, i) => {
      const ms = median(xs);
      return { ms, perSecond: 1000 / ms, iterations: batches[i]! * count, samples: xs };
    });
  }

  report(row: BenchRow): void {
    const stored: StoredRow = { ...row };
    const ratio = ratioOf(row);
    if (ratio !== undefined) stored.ratio = ratio;
    if (row.target !== undefined) {
      const okRatio = row.target.ratio === undefined ||
        (ratio !== undefined && ratio >= row.target.ratio);
      const okValue = row.target.value === undefined ||
        (row.better === Better.lower
          ? row.value <= row.target.value
          : row.value >= row.target.value);
      stored.met = okRatio && okValue;
    }
    const list = this.rows.get(this.current) ?? [];
    list.push(stored);
    this.rows.set(this.current, list);
    this.log(
      `  ${row.name}: ${fmt(row.value)} ${row.unit}` +
        (ratio === undefined ? "" : ` (${fmt(ratio)}× ${row.baseline!.name})`),
    );
  }

  log(line: string): void {
    logLine(line);
  }

  table(): string {
    const head = ["module", "figure", "value", "baseline", "ratio", "target", "met"];
    const lines: string[][] = [head];
    for (const [mod, rows] of this.rows) {
      for (const r of rows) {
        const target = [
          r.target?.ratio === undefined ? "" : `≥${r.target.ratio}×`,
          r.target?.value === undefined
            ? ""
            : `${r.better === Better.lower ? "≤" : "≥"}${fmt(r.target.value)} ${r.unit}`,
        ].filter((x) => x !== "").join(", ");
        lines.push([
          mod,
          r.name,
          `${fmt(r.value)} ${r.unit}`,
          r.baseline === undefined ? "" : `${fmt(r.baseline.value)} ${r.unit} (${r.baseline.name})`,
          r.ratio === undefined ? "" : `${fmt(r.ratio)}×`,
          target,
          r.met === undefined ? "" : r.met ? "yes" : "NO",
        ]);
      }
    }
    const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
    return lines.map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd())
      .join("\n");
  }
}

const resultsDir = decodeURIComponent(new URL("./results/", import.meta.url).pathname);
const resultsFile = resultsDir + "latest.json";

async function store(run: Run): Promise<void> {
  await ensureDir(resultsDir);
  let doc: { results: Record<string, Record<string, unknown>> } = { results: {} };
  const old = await readFileIfExists(resultsFile);
  if (old !== undefined) {
    try {
      const parsed = JSON.parse(new TextDecoder().decode(old));
      if (typeof parsed?.results === "object" && parsed.results !== null) doc = parsed;
    } catch {
      // A broken file is replaced.
    }
  }
  const mine = doc.results[run.runtime] ?? {};
  const time = new Date().toISOString();
  const ua = typeof navigator === "object" ? navigator.userAgent : run.runtime;
  for (const [mod, rows] of run.rows) mine[mod] = { time, runtime: ua, rows };
  doc.results[run.runtime] = mine;
  await writeFileAtomic(
    resultsFile,
    new TextEncoder().encode(JSON.stringify(doc, null, 2) + "\n"),
  );
}

/**
 * Runs benchmark modules in sequence, then prints the table and merges the
 * JSON. A module that throws is reported and the others still run.
 *
 * @param modules The modules, by name, in the order to run them.
 * @param quick Fewer samples (smoke runs).
 * @returns Whether every module ran without throwing.
 */
export async function runModules(
  modules: { name: string; run: BenchRun }[],
  quick = cliArgs().includes("--quick"),
): Promise<boolean> {
  const run = new Run(quick);
  let ok = true;
  for (const m of modules) {
    run.current = m.name;
    run.log(`# ${m.name} (${run.runtime}${quick ? ", quick" : ""})`);
    try {
      await m.run(run);
    } catch (e) {
      ok = false;
      run.log(`# ${m.name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
  }
  run.log("\n" + run.table());
  await store(run);
  run.log(`\nwritten to ${resultsFile}`);
  return ok;
}

/**
 * Runs one module on its own (its `import.meta.main` branch).
 *
 * @param name The module's name (its file name without `.ts`).
 * @param fn Its `run` function.
 * @returns When done.
 * @throws {Error} If the module threw (after the table is written).
 */
export async function runStandalone(name: string, fn: BenchRun): Promise<void> {
  const ok = await runModules([{ name, run: fn }]);
  if (!ok) throw new Error(`Benchmark "${name}" failed`);
}
