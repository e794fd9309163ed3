// The SDK in a browser tab (issue 16): mod.ts bundled for the browser, served from
// http://127.0.0.1 (a secure context), runs in headless Chromium; the page's agent joins a
// channel by an invite token made by an agent in this process and they exchange messages both
// ways through a real relay process, which admits the page's Origin by --allow-origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { reaping, tempDir } from "./_helpers.ts";
import {
  browserScene,
  chromiumPath,
  openSdkTab,
  type PageGlobals,
  serveSdk,
  withPageLog,
} from "./_browser.ts";

const browser = chromiumPath();
// scripts/ok.sh installs it (scripts/chromium.sh); CI must not skip.
const skip = browser === undefined && process.env.CI !== "true"
  ? "chromium is not installed (scripts/chromium.sh install)"
  : false;

test("an agent in a browser tab joins by invite and exchanges messages through a real relay", {
  skip,
  timeout: 60_000,
}, async () => {
  assert.ok(browser, "chromium is not installed: run scripts/chromium.sh install");
  await reaping(async () => {
    const dir = await tempDir();
    const site = await serveSdk(dir);
    assert.ok(site.files.includes("mod.js"), site.files.join(", "));
    // The token client (an API key from a page) is bundled, not left out as server code.
    const bundled = await Promise.all(
      site.files.map((f) => fsp.readFile(path.join(dir, f), "utf8")),
    );
    assert.ok(bundled.some((t) => t.includes("/v1/tokens")), "the token client is in the bundle");
    const scene = await browserScene(dir, site.origin, browser);
    const { relay, alice, chrome } = scene;
    const channel = "acme/browser/chat";
    let pageLog: string[] = [];
    try {
      await alice.create(channel);
      const token = await alice.invite(channel);
      const { page, log, missing } = await openSdkTab(await chrome.newContext(), site.origin);
      pageLog = log;
      assert.equal(await page.evaluate(() => isSecureContext), true);

      await page.evaluate(async ({ endpoint, channel, token }) => {
        const g = globalThis as unknown as PageGlobals;
        g.agent = new g.sdk.SkytaleChannelManager({
          identity: "browser-bob",
          endpoint,
          store: new g.sdk.MemoryStore(),
        });
        await g.agent.joinWithToken(channel, token, { timeout: 15 });
        await g.agent.send(channel, "hello from a browser tab");
      }, { endpoint: relay.url, channel, token });

      const got = await alice.receive(channel, { timeout: 10 });
      assert.deepEqual(
        got.map((m) => [m.sender, m.text]),
        [["browser-bob", "hello from a browser tab"]],
        pageLog.join("\n"),
      );
      await alice.send(channel, "hello back from the relay's other side");
      const back = await page.evaluate(async (channel) => {
        const g = globalThis as unknown as PageGlobals;
        const msgs = await g.agent.receive(channel, { timeout: 10 });
        const members = (await g.agent.channels()).find((c) => c.channel === channel)?.members;
        await g.agent.close();
        return { texts: msgs.map((m) => [m.sender, m.text]), members };
      }, channel);
      assert.deepEqual(back.texts, [["alice", "hello back from the relay's other side"]]);
      assert.deepEqual(back.members?.slice().sort(), ["alice", "browser-bob"]);
      // The one server-side module the tab asked for: the node:crypto accelerator, which the MLS
      // provider tries and, when it fails to load, does without (WebCrypto and noble).
      assert.deepEqual(missing, ["/runtime/native_crypto.ts"]);
    } catch (e) {
      throw withPageLog(e, pageLog);
    } finally {
      await scene.close();
      await site.close();
    }
  });
});
