/**
 * Builds the console's script: `page.ts` and the SDK it imports, bundled for
 * the browser with esbuild from the package's own source files, once, when
 * the console starts. Nothing is written to disk; the files are served from
 * memory.
 *
 * The SDK reaches its server-side modules (files, SQLite, the embedded relay,
 * node:crypto) only by `await import()`, where they exist; in the bundle each
 * such import points at `/_server_only.js`, which throws, so the SDK takes its
 * browser path, as in `tests/browser_test.ts`.
 *
 * @module
 */
import { UsageError } from "../errors.ts";

/**
 * What a browser never loads: Node built-ins, `ws`, and our server, CLI, file and node:crypto
 * modules. The SDK reaches them only by `await import()` (tests/module_graph_test.ts), so a
 * bundle keeps those imports as they are; in a tab such an import fails, which the SDK expects.
 * The relay's token client (`auth_client.ts`) is browser-safe and stays in: an API key works
 * from a page. The one list, for the console and for tests/_browser.ts.
 */
export const SERVER_SIDE: RegExp =
  /(^node:|^ws$|^@nats-io\/|\/src\/cli\/|\/src\/relay\/(local|local_auth|auth|auth_keys|auth_nats|server)\.ts$|\/src\/relay\/log\/|\/src\/runtime\/(fs|home|native_crypto|serve|sqlite|http|process|stdio)\.ts$|\/src\/mcp\/(stdio|http|server)\.ts$|\/mcp\.ts$)/;

/** The module every server-side dynamic import of the bundle loads instead. */
export const SERVER_ONLY = "_server_only.js";
const SERVER_ONLY_JS =
  `throw new Error("This module runs on a server only; the SDK does without it in a browser");\n`;

type _Esbuild = typeof import("esbuild");

async function _esbuild(): Promise<_Esbuild> {
  try {
    return await import("esbuild");
  } catch (e) {
    throw new UsageError(
      `The console builds its page with esbuild, which is not installed here: ${
        e instanceof Error ? e.message : e
      }`,
    );
  }
}

/** The file path of a `file:` URL (POSIX). */
function _filePath(u: URL): string {
  return decodeURIComponent(u.pathname);
}

/**
 * Bundles the page script with the SDK.
 *
 * @returns The files by URL path (`/page.js`, its chunks and `/_server_only.js`).
 * @throws {UsageError} When esbuild is missing or the package's source is not on disk.
 */
export async function buildPage(): Promise<Map<string, Uint8Array>> {
  const entry = new URL("./page.ts", import.meta.url);
  const { readFileIfExists } = await import("../runtime/fs.ts");
  if (entry.protocol !== "file:" || !(await readFileIfExists(_filePath(entry)))) {
    throw new UsageError(
      `The console builds its page from the package's source files, which are not on disk here ` +
        `("${entry.href}"): run it from a checkout or an npm install of the package, not from ` +
        `jsr: or a compiled binary`,
    );
  }
  const esbuild = await _esbuild();
  try {
    const result = await esbuild.build({
      entryPoints: { page: _filePath(entry) },
      bundle: true,
      format: "esm",
      platform: "browser",
      splitting: true,
      target: "es2024",
      outdir: "/skytale-console",
      write: false,
      logLevel: "silent",
      plugins: [{
        name: "server-side-stays-out",
        setup(build) {
          build.onResolve({ filter: /.*/ }, (args) => {
            const full = args.path.startsWith(".")
              ? _filePath(new URL(args.path, `file://${args.resolveDir}/`))
              : args.path;
            if (!SERVER_SIDE.test(full)) return undefined;
            if (args.kind !== "dynamic-import") {
              throw new Error(`"${args.importer}" imports "${args.path}" statically`);
            }
            return { path: `/${SERVER_ONLY}`, external: true };
          });
        },
      }],
    });
    const files = new Map<string, Uint8Array>();
    for (const f of result.outputFiles) {
      files.set(f.path.slice("/skytale-console".length), f.contents);
    }
    files.set(`/${SERVER_ONLY}`, new TextEncoder().encode(SERVER_ONLY_JS));
    return files;
  } finally {
    await esbuild.stop();
  }
}
