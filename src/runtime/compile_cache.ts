/**
 * Node's on-disk module compile cache, for the command line: Node strips the
 * types of every `.ts` module it loads and compiles it on every start, which
 * is most of what the stdio MCP server's start costs more under Node than
 * under Deno (whose own cache keeps both). With the cache, a later start reads
 * the stripped source and V8's code for each module from disk.
 *
 * The cache holds code that Node runs, so it lives only in a folder of this
 * user's that nobody else can write: `SKYTALE_HOME/cache/node-compile-cache`
 * (made owner-only), never Node's default in the shared temp folder, where
 * another local user could plant it first. A folder that is not private
 * (another owner, writable by group or others, a symlink on the way) means no
 * cache. `NODE_COMPILE_CACHE` (the user's own choice) is honoured as Node does,
 * and `NODE_DISABLE_COMPILE_CACHE=1` turns it off (docs/DECISIONS.md, "Cold start").
 *
 * @module
 */
import { env, runtime } from "./env.ts";

/**
 * Under Node, caches the modules loaded from now on; elsewhere it does nothing.
 * It never throws: a cache that cannot be used leaves Node as it was.
 *
 * @returns When done.
 */
export async function enableCompileCache(): Promise<void> {
  if (runtime !== "node" || env("NODE_DISABLE_COMPILE_CACHE")) return;
  try {
    const m: { enableCompileCache?: (dir?: string) => unknown } = await import("node:module");
    if (typeof m.enableCompileCache !== "function") return;
    if (env("NODE_COMPILE_CACHE")) return void m.enableCompileCache();
    const dir = await privateCacheDir();
    if (dir !== undefined) m.enableCompileCache(dir);
  } catch {
    // an optimisation only
  }
}

/** `SKYTALE_HOME/cache/node-compile-cache`, made if missing, if it and its parents are private. */
async function privateCacheDir(): Promise<string | undefined> {
  const [fs, path, { default: proc }, { skytaleHome }] = await Promise.all([
    import("node:fs"),
    import("node:path"),
    import("node:process"),
    import("./home.ts"),
  ]);
  const home = path.resolve(skytaleHome());
  const dir = path.join(home, "cache", "node-compile-cache");
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const uid = typeof proc.getuid === "function" ? proc.getuid() : undefined;
  for (const d of [home, path.join(home, "cache"), dir]) {
    const st = fs.lstatSync(d);
    const mine = uid === undefined || st.uid === uid;
    if (!st.isDirectory() || !mine || (st.mode & 0o022) !== 0) return undefined;
  }
  return dir;
}
