// The SDK in a browser tab, for tests/browser_*_test.ts: an esbuild bundle of mod.ts for the
// browser, a static server on 127.0.0.1 (a secure context), and headless Chromium.
import fs from "node:fs";
import fsp from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import process from "node:process";
import * as esbuild from "esbuild";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { MemoryStore, SkytaleChannelManager } from "../mod.ts";
import { ROOT, startRelayProcess } from "./_helpers.ts";
import { SERVER_SIDE } from "../src/console/_bundle.ts";

/** Where the browser is: `SKYTALE_CHROMIUM`, else Debian's `chromium` (scripts/chromium.sh). */
export function chromiumPath(): string | undefined {
  for (
    const p of [process.env.SKYTALE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  ) {
    if (p && fs.existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Bundles `mod.ts` for the browser (ES modules, split at every dynamic import) into `outDir`
 * as `mod.js` and chunks.
 *
 * @returns The bundle's files, relative to `outDir`.
 */
export async function bundleSdk(outDir: string): Promise<string[]> {
  const result = await esbuild.build({
    entryPoints: { mod: path.join(ROOT, "mod.ts") },
    bundle: true,
    format: "esm",
    platform: "browser",
    splitting: true,
    target: "es2024",
    outdir: outDir,
    metafile: true,
    logLevel: "silent",
    plugins: [{
      name: "server-side-stays-out",
      setup(build) {
        build.onResolve({ filter: /.*/ }, (args) => {
          const full = args.path.startsWith(".")
            ? path.resolve(args.resolveDir, args.path)
            : args.path;
          if (!SERVER_SIDE.test(full)) return undefined;
          if (args.kind !== "dynamic-import") {
            throw new Error(`"${args.importer}" imports "${args.path}" statically`);
          }
          return { path: args.path, external: true };
        });
      },
    }],
  });
  await esbuild.stop();
  return Object.keys(result.metafile.outputs).map((f) => path.relative(outDir, path.resolve(f)));
}

/** Serves `dir` (and `index.html` at `/`) on 127.0.0.1; resolves with its origin. */
export async function serveDir(dir: string): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const name = new URL(req.url ?? "/", "http://x").pathname.slice(1) || "index.html";
    const file = path.join(dir, path.normalize(name));
    if (!file.startsWith(dir + path.sep)) return void res.writeHead(404).end();
    fsp.readFile(file).then((body) => {
      res.writeHead(200, {
        "content-type": file.endsWith(".html") ? "text/html" : "text/javascript",
      }).end(body);
    }, () => res.writeHead(404).end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Chromium's flags for a quiet headless run in a container. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

/** A page that imports the bundled SDK as `globalThis.sdk`, then sets its title to "ready". */
export const SDK_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>skytale browser test</title>
<script type="module">
  import * as sdk from "./mod.js";
  globalThis.sdk = sdk;
  document.title = "ready";
</script>`;

/** What the tests put on a page's `globalThis`: `sdk` is the bundled mod.ts. */
export interface PageGlobals {
  sdk: typeof import("../mod.ts");
  agent: SkytaleChannelManager;
}

/**
 * Bundles the SDK into `dir`, writes {@linkcode SDK_PAGE} as its `index.html` and serves it.
 *
 * @returns The bundle's files and the server.
 */
export async function serveSdk(
  dir: string,
): Promise<{ files: string[]; origin: string; close(): Promise<void> }> {
  const files = await bundleSdk(dir);
  await fsp.writeFile(path.join(dir, "index.html"), SDK_PAGE);
  return { files, ...await serveDir(dir) };
}

/** A tab of `context` on the SDK page, what it logs, and the paths it was answered 404 for. */
export interface SdkTab {
  page: Page;
  log: string[];
  missing: string[];
  /** Loads the page again (a reload, same storage) and waits until the SDK is imported. */
  reload(): Promise<void>;
}

/** Opens {@linkcode SDK_PAGE} at `origin` in a new tab of `context`; resolves once it is ready. */
export async function openSdkTab(context: BrowserContext, origin: string): Promise<SdkTab> {
  const page = await context.newPage();
  const log: string[] = [];
  const missing: string[] = [];
  page.on("console", (m) => void log.push(m.text()));
  page.on("pageerror", (e) => void log.push(`pageerror: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() === 404) missing.push(new URL(r.url()).pathname);
  });
  const ready = () =>
    page.waitForFunction(() => document.title === "ready", undefined, { timeout: 10_000 });
  await page.goto(`${origin}/`);
  await ready();
  return {
    page,
    log,
    missing,
    reload: async () => {
      await page.reload();
      await ready();
    },
  };
}

/**
 * What every browser test starts with: a relay process (its log under `dir`) that admits the
 * page's `origin`, an agent "alice" on it in this process, and Chromium. The caller closes them.
 */
export async function browserScene(
  dir: string,
  origin: string,
  executablePath: string,
): Promise<{
  relay: Awaited<ReturnType<typeof startRelayProcess>>;
  alice: SkytaleChannelManager;
  chrome: Browser;
  /** Closes Chromium, then alice, then stops the relay. */
  close(): Promise<void>;
}> {
  const relay = await startRelayProcess([
    "--data-dir",
    path.join(dir, "relay"),
    "--allow-origin",
    origin,
  ]);
  const alice = new SkytaleChannelManager({
    identity: "alice",
    endpoint: relay.url,
    store: new MemoryStore(),
  });
  const chrome = await chromium.launch({ executablePath, args: CHROMIUM_ARGS });
  return {
    relay,
    alice,
    chrome,
    async close() {
      await chrome.close();
      await alice.close();
      await relay.proc.kill();
    },
  };
}

/**
 * A browser test's failure with what its page logged, so that it says what the tab saw.
 *
 * @param e What was thrown.
 * @param log The page's console lines and errors.
 * @returns The error to throw instead.
 */
export function withPageLog(e: unknown, log: readonly string[]): Error {
  return new Error(`${e instanceof Error ? e.message : e}\npage log:\n${log.join("\n")}`, {
    cause: e,
  });
}
