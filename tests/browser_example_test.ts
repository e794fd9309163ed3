// examples/browser (issue 16) runs as its README says: the SDK bundle is built by the README's
// esbuild command, the page is served from http://127.0.0.1 and opened in headless Chromium with
// an invite made by an agent in this process, through a real relay process that admits the
// page's Origin. The page joins, shows what arrives, sends from its form, and after a reload is
// the same member (IndexedDbStore) and goes on receiving, with nothing shown twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import type { Page } from "playwright-core";
import { reaping, ROOT, tempDir } from "./_helpers.ts";
import { browserScene, chromiumPath, serveDir, withPageLog } from "./_browser.ts";

const browser = chromiumPath();
// scripts/ok.sh installs it (scripts/chromium.sh); CI must not skip.
const skip = browser === undefined && process.env.CI !== "true"
  ? "chromium is not installed (scripts/chromium.sh install)"
  : false;

const EXAMPLE = path.join(ROOT, "examples", "browser");
const OUTFILE = "--outfile=examples/browser/skytale.js";

/** The build command of examples/browser/README.md, which index.html repeats. */
async function buildCommand(): Promise<string> {
  const readme = await fsp.readFile(path.join(EXAMPLE, "README.md"), "utf8");
  const command = readme.split("\n").find((l) => l.startsWith("npx esbuild "));
  assert.ok(command?.includes(OUTFILE), "README.md gives the build command");
  assert.ok(command);
  const html = await fsp.readFile(path.join(EXAMPLE, "index.html"), "utf8");
  assert.ok(html.includes(command), "index.html gives the same build command as README.md");
  return command;
}

/** Runs the README's command from the repository's root, writing the bundle into `dir`. */
async function buildInto(dir: string): Promise<void> {
  const command = (await buildCommand())
    .replace(/^npx esbuild /, "esbuild ")
    .replace(OUTFILE, `--outfile=${path.join(dir, "skytale.js")}`);
  await promisify(execFile)("sh", ["-c", command], {
    cwd: ROOT,
    env: {
      ...process.env,
      PATH: `${path.join(ROOT, "node_modules", ".bin")}${path.delimiter}${process.env.PATH}`,
    },
  });
}

/** The page's status line once it reads "Member of …", and the lines of its message list. */
async function member(page: Page): Promise<string> {
  await page.waitForFunction(
    () => /^(Member of|Failed)/.test(document.getElementById("status")?.textContent ?? ""),
    undefined,
    { timeout: 30_000 },
  );
  const status = await page.textContent("#status") ?? "";
  assert.match(status, /^Member of /);
  return status;
}

/** Waits until the page's message list holds `line`; resolves with the whole list. */
async function shown(page: Page, line: string): Promise<string[]> {
  await page.waitForFunction(
    (line) => [...document.querySelectorAll("#messages li")].some((l) => l.textContent === line),
    line,
    { timeout: 15_000 },
  );
  return await page.locator("#messages li").allTextContents();
}

test("examples/browser joins by invite, shows and sends messages, and resumes after a reload", {
  skip,
  timeout: 120_000,
}, async () => {
  assert.ok(browser, "chromium is not installed: run scripts/chromium.sh install");
  await reaping(async () => {
    const dir = await tempDir();
    await buildInto(dir);
    for (const f of ["index.html", "agent.js"]) {
      await fsp.copyFile(path.join(EXAMPLE, f), path.join(dir, f));
    }
    const site = await serveDir(dir);
    const scene = await browserScene(dir, site.origin, browser);
    const { relay, alice, chrome } = scene;
    const channel = "acme/browser/example";
    const log: string[] = [];
    try {
      await alice.create(channel);
      const fragment = new URLSearchParams({
        invite: await alice.invite(channel),
        channel,
        relay: relay.url,
      });
      const page = await (await chrome.newContext()).newPage();
      page.on("console", (m) => void log.push(m.text()));
      page.on("pageerror", (e) => void log.push(`pageerror: ${e.message}`));
      // No ?name=: the page makes one up and writes it into its URL.
      await page.goto(`${site.origin}/#${fragment}`);
      const status = await member(page);
      const name = new URL(page.url()).searchParams.get("name");
      assert.match(name ?? "", /^guest-/);
      const did = status.match(/did:key:\w+/)?.[0];
      assert.ok(did, status);
      assert.equal(status, `Member of ${channel} as ${name} (${did})`);

      await alice.send(channel, "hello, page");
      assert.deepEqual(await shown(page, "alice: hello, page"), ["alice: hello, page"]);

      await page.fill("#text", "hello from the form");
      await page.press("#text", "Enter");
      const got = await alice.receive(channel, { timeout: 10 });
      assert.deepEqual(got.map((m) => [m.sender, m.text]), [[name, "hello from the form"]]);
      await shown(page, `${name} (me): hello from the form`);

      // A reload: the same URL, the state in IndexedDB; the used invite is not used again.
      await page.reload();
      assert.equal(await member(page), status, "the reloaded page is the same member");
      await alice.send(channel, "hello after the reload");
      assert.deepEqual(await shown(page, "alice: hello after the reload"), [
        "alice: hello after the reload",
      ]);
    } catch (e) {
      throw withPageLog(e, log);
    } finally {
      await scene.close();
      await site.close();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
