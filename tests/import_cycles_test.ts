// No import cycles among our own modules in src/: two modules that import each other (even for
// types only) are one concept split in two, or a shared piece that wants its own module. The
// walker reads the source as tests/_graph.ts does, but keeps `import type` edges and records
// which module imports which, then looks for strongly connected components (Tarjan).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./_helpers.ts";

/** `import … from "x"`, `export … from "x"`, `import "x"`, type-only ones included. */
const IMPORT = /^\s*(?:import|export)\s+(?:[^;"']*?\sfrom\s+)?["']([^"']+)["']\s*;?/gm;

/** Cycles allowed in src/, each as its modules sorted by path: none. */
const KNOWN_CYCLES: string[][] = [];

/** Every `.ts` file under `dir`, relative to the root. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** Our own modules each file imports statically (types too), by path from the root. */
export function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(dir)) {
    const text = fs.readFileSync(path.join(ROOT, file), "utf8");
    const deps = new Set<string>();
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1]!;
      if (!spec.startsWith(".")) continue;
      const dep = path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec));
      if (dep.startsWith(dir + path.sep)) deps.add(dep);
    }
    graph.set(file, [...deps].sort());
  }
  return graph;
}

/** The graph's cycles: strongly connected components of two or more modules, or a self-import. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

test("src/ has no import cycle but the known ones", () => {
  const graph = importGraph("src");
  assert.ok(graph.size > 20, "the walker finds the sources");
  assert.deepEqual(cycles(graph), KNOWN_CYCLES);
});

test("the cycle finder sees a cycle through type-only imports and none in a chain", () => {
  const g = new Map([
    ["a.ts", ["b.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts"]],
    ["d.ts", ["a.ts"]],
    ["e.ts", ["e.ts"]],
  ]);
  assert.deepEqual(cycles(g), [["a.ts", "b.ts", "c.ts"], ["e.ts"]]);
  assert.deepEqual(cycles(new Map([["a.ts", ["b.ts"]], ["b.ts", []]])), []);
  const dir = fs.mkdtempSync(path.join(ROOT, ".cycles-"));
  try {
    fs.mkdirSync(path.join(dir, "x"));
    fs.writeFileSync(path.join(dir, "x", "a.ts"), 'import type { B } from "./b.ts";\n');
    fs.writeFileSync(path.join(dir, "x", "b.ts"), 'export { a } from "./a.ts";\n');
    const rel = path.relative(ROOT, dir);
    assert.deepEqual(cycles(importGraph(rel)), [[`${rel}/x/a.ts`, `${rel}/x/b.ts`]]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
