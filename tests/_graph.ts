// The static import graph of our own modules, as a reader of the source sees it: what loads
// with an entry point before any `await import()` runs (tests/cold_start_test.ts,
// tests/module_graph_test.ts).
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./_helpers.ts";

/** `import … from "x"`, `export … from "x"` and `import "x"`, but not `import type`/`export type`. */
const STATIC_IMPORT =
  /^\s*(?:import|export)\s+(?!type\s)(?:[^;"']*?\sfrom\s+)?["']([^"']+)["']\s*;?/gm;

/**
 * The modules a file loads statically: our own files by path from the root, packages and
 * `node:` builtins by specifier. Dynamic `import()` is not followed.
 */
export function staticGraph(entries: string[]): Set<string> {
  const seen = new Set<string>();
  const todo = entries.map((e) => path.join(ROOT, e));
  while (todo.length > 0) {
    const file = todo.pop()!;
    const rel = path.relative(ROOT, file);
    if (seen.has(rel)) continue;
    seen.add(rel);
    const text = fs.readFileSync(file, "utf8");
    for (const m of text.matchAll(STATIC_IMPORT)) {
      const spec = m[1]!;
      if (spec.startsWith(".")) todo.push(path.resolve(path.dirname(file), spec));
      else seen.add(spec);
    }
  }
  return seen;
}
