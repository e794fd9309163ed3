// The web console (issue 16): `skytale console` started as a user would, a real relay process that
// admits the console's origin, an agent in this process that owns a channel, and headless
// Chromium playing the person: paste the invite, join, see both members with the fingerprints the
// agent sees, read the agent's messages (markup shown as text), send one back, see the shared
// context. Screenshots go to .ci/tmp/console/ (git-ignored), never into the repository.
import { test } from "node:test";
import assert from "node:assert/strict";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import http from "node:http";
import { chromium, type Page } from "playwright-core";
import { MemoryStore, SkytaleChannelManager, ValidationError } from "../mod.ts";
import { startConsole } from "../src/console/server.ts";
import {
  eventually,
  freePort,
  reaping,
  ROOT,
  spawnScript,
  startRelayProcess,
  tempDir,
} from "./_helpers.ts";
import { CHROMIUM_ARGS, chromiumPath, withPageLog } from "./_browser.ts";

const browser = chromiumPath();
// scripts/ok.sh installs it (scripts/chromium.sh); CI must not skip.
const skip = browser === undefined && process.env.CI !== "true"
  ? "chromium is not installed (scripts/chromium.sh install)"
  : false;

const SHOTS = path.join(ROOT, ".ci", "tmp", "console");
const XSS = `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>`;

/** The member table as the page shows it: name, did, fingerprint per row. */
function memberRows(page: Page): Promise<string[][]> {
  return page.$$eval(
    "#members tbody tr",
    (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")),
  );
}

/** The message log as the page shows it: sender, full did, text per entry. */
function messageRows(page: Page): Promise<string[][]> {
  return page.$$eval("#messages li", (lis) =>
    lis.map((li) => [
      li.querySelector(".sender")?.textContent ?? "",
      (li as HTMLElement).dataset.senderDid ?? "",
      li.querySelector(".text")?.textContent ?? "",
    ]));
}

async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ({ selector, text }) =>
      [...document.querySelectorAll(selector)].some((e) => e.textContent === text),
    { selector, text },
    { timeout: 30_000 },
  );
}

test("a person joins by invite in the web console, sees members, messages and context", {
  skip,
  timeout: 180_000,
}, async () => {
  assert.ok(browser, "chromium is not installed: run scripts/chromium.sh install");
  await reaping(async () => {
    const dir = await tempDir();
    await fsp.mkdir(SHOTS, { recursive: true });
    const origin = `http://127.0.0.1:${await freePort()}`;
    const relay = await startRelayProcess([
      "--data-dir",
      path.join(dir, "relay"),
      "--allow-origin",
      origin,
    ]);
    const site = spawnScript("mod.ts", [
      "console",
      "--port",
      new URL(origin).port,
      "--relay",
      relay.url,
    ]);
    const [, url] = await site.waitFor(/skytale console at (\S+)/, 90_000);
    assert.equal(url, `${origin}/`);
    const [, allow] = await site.waitFor(/skytale relay --allow-origin (\S+)/);
    assert.equal(allow, origin);

    const channel = "acme/console/room";
    const alice = new SkytaleChannelManager({
      identity: "alice",
      endpoint: relay.url,
      store: new MemoryStore(),
    });
    const chrome = await chromium.launch({ executablePath: browser, args: CHROMIUM_ARGS });
    const pageLog: string[] = [];
    try {
      await alice.create(channel);
      await alice.context(channel).set("plan", "ship the console");
      const token = await alice.invite(channel);

      const page = await chrome.newPage();
      page.on("console", (m) => void pageLog.push(m.text()));
      page.on("pageerror", (e) => void pageLog.push(`pageerror: ${e.message}`));
      const res = await page.goto(url!);
      const headers = res!.headers();
      const csp = headers["content-security-policy"] ?? "";
      assert.ok(csp.includes("script-src 'self'"), csp);
      assert.ok(csp.includes(`connect-src 'self' ${relay.url}`), csp);
      assert.equal(headers["x-content-type-options"], "nosniff");
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      assert.match(await page.inputValue("#identity"), /^console-[0-9a-f]{6}$/);

      // A token that is not one is refused in the page, which can then try again.
      await page.fill("#invite", "skt_inv_not-a-token");
      await page.getByRole("button", { name: "Join" }).click();
      await waitForText(
        page,
        "#status.error",
        "Could not join: Invite token is not usable: it is truncated or altered",
      );
      assert.equal(await page.isEnabled("#join-button"), true);

      await page.fill("#identity", "human");
      await page.fill("#invite", token);
      await page.getByRole("button", { name: "Join" }).click();
      await page.waitForSelector("#channel:not([hidden])", { timeout: 90_000 });
      const pageDid = await page.getAttribute("#me", "data-did");
      assert.match(pageDid ?? "", /^did:key:z6Mk/);

      // Both members, with the dids and fingerprints the agent sees.
      await page.waitForFunction(() => document.querySelectorAll("#members tbody tr").length === 2);
      const roster = await alice.roster(channel);
      assert.deepEqual(
        (await memberRows(page)).sort(),
        roster.map((m) => [m.did === pageDid ? `${m.name} (you)` : m.name, m.did, m.fingerprint])
          .sort(),
      );
      assert.ok(roster.some((m) => m.did === (pageDid ?? "") && m.name === "human"));
      const me = await alice.whoami();
      assert.ok((await memberRows(page)).some((r) => r[1] === me.did && r[2] === me.fingerprint));

      // The shared context set before the page joined.
      await waitForText(page, '#context tbody tr[data-key="plan"] td.value', "ship the console");

      // The agent's messages, markup shown as text.
      await alice.send(channel, "hello, human");
      await alice.send(channel, XSS);
      await waitForText(page, "#messages .text", XSS);
      assert.equal(await page.locator("#messages img, #messages script").count(), 0);
      assert.notEqual(await page.title(), "pwned");
      assert.deepEqual(await messageRows(page), [
        ["alice", me.did, "hello, human"],
        ["alice", me.did, XSS],
      ]);
      await page.screenshot({ path: path.join(SHOTS, "joined.png"), fullPage: true });

      // A message typed in the page reaches the agent from the page's did.
      await page.fill("#message", "hello from a person");
      await page.getByRole("button", { name: "Send" }).click();
      const got = await alice.receive(channel, { timeout: 30 });
      assert.deepEqual(got.map((m) => [m.sender, m.senderId, m.text]), [
        ["human", pageDid, "hello from a person"],
      ]);
      await waitForText(page, "#messages li.mine .text", "hello from a person");

      // A context key set in the page reaches the agent.
      await page.fill("#context-key", "status");
      await page.fill("#context-value", "reviewing");
      await page.getByRole("button", { name: "Set" }).click();
      await eventually(
        async () => (await alice.context(channel).get("status"))?.value === "reviewing",
        30_000,
        "the page's context key at the agent",
      );
      assert.equal((await alice.context(channel).get("status"))?.author.did, pageDid);
      await page.screenshot({ path: path.join(SHOTS, "sent.png"), fullPage: true });
      const blocked = pageLog.filter((l) => /Content Security Policy|pageerror/i.test(l));
      assert.deepEqual(blocked, []);
    } catch (e) {
      throw withPageLog(e, pageLog);
    } finally {
      await chrome.close();
      await alice.close();
      await site.kill();
      await relay.proc.kill();
    }
  });
});

/** A GET with the given Host header (fetch will not send one of our choosing). */
function get(
  url: string,
  host: string,
  method = "GET",
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { host } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("the console serves its static files with strict headers, to its own origin only", {
  timeout: 60_000,
}, async () => {
  await assert.rejects(startConsole({ hostname: "0.0.0.0" }), ValidationError);
  await assert.rejects(startConsole({ relay: "http://relay.example" }), ValidationError);
  await using site = await startConsole({ relay: "wss://relay.example:8443/" });
  const host = new URL(site.origin).host;
  const page = await get(site.url, host);
  assert.equal(page.status, 200);
  assert.match(page.headers["content-type"] ?? "", /^text\/html/);
  assert.equal(
    page.headers["content-security-policy"],
    "default-src 'none'; script-src 'self'; style-src 'self'; " +
      "connect-src 'self' wss://relay.example:8443; img-src 'self'; base-uri 'none'; " +
      "form-action 'none'; frame-ancestors 'none'",
  );
  assert.equal(page.headers["x-content-type-options"], "nosniff");
  assert.equal(page.headers["cache-control"], "no-store");
  assert.match(page.body, /<meta name="skytale-relay" content="wss:\/\/relay\.example:8443\/">/);
  assert.match(page.body, /<script type="module" src="\/page\.js"><\/script>/);
  assert.doesNotMatch(page.body, /<script>/, "no inline script: the CSP would refuse it");

  const script = await get(`${site.origin}/page.js`, host);
  assert.equal(script.status, 200);
  assert.match(script.headers["content-type"] ?? "", /^text\/javascript/);
  assert.match(script.body, /SkytaleChannelManager|skt_inv_/);
  assert.equal((await get(`${site.origin}/_server_only.js`, host)).status, 200);
  assert.equal((await get(`${site.origin}/../mod.ts`, host)).status, 404);
  assert.equal((await get(`${site.origin}/src/console/page.ts`, host)).status, 404);
  assert.equal((await get(site.url, host, "POST")).status, 405);
  // Another name for the same address is another origin, which the relay would refuse.
  const other = await get(site.url, `localhost:${new URL(site.origin).port}`);
  assert.equal(other.status, 421);
  assert.equal(other.body, `Open this console at ${site.url}\n`);
});
