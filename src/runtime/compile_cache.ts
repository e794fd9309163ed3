/**
 * Node's on-disk module compile cache, for the command line: Node strips the
 * types of every `.ts` module it loads and compiles it on every start, which
 * is most of what the stdio MCP server's start costs more under Node than
 * under Deno (whose own cache keeps both). With the cache, a later start reads
 * the stripped source and V8's code for each module from
 * `$NODE_COMPILE_CACHE` (default: `node-compile-cache` in the temp dir);
 * `NODE_DISABLE_COMPILE_CACHE=1` turns it off (docs/DECISIONS.md, "Cold start").
 *
 * @module
 */
import { runtime } from "./env.ts";

/**
 * Under Node, caches the modules loaded from now on; elsewhere it does nothing.
 * It never throws: a cache that cannot be used leaves Node as it was.
 *
 * @returns When done.
 */
export async function enableCompileCache(): Promise<void> {
  if (runtime !== "node") return;
  const m: { enableCompileCache?: () => unknown } = await import("node:module");
  try {
    m.enableCompileCache?.();
  } catch {
    // an optimisation only
  }
}
