// IndexedDbStore (issue 16) in the browser it is for: headless Chromium runs the bundled SDK from
// http://127.0.0.1 (IndexedDB and Web Locks need a real browser; Deno, Node and Bun have neither).
// 1. The Store contract on IndexedDB: records, blobs, key packages and journals round-trip, two
//    identities do not mix, a corrupt record is refused by name, a second holder gets in_use.
// 2. A page agent on IndexedDbStore joins by invite, talks with an agent in this process through
//    a real relay process, and is reloaded without closing: the new page's agent is the same
//    member (same did), gets what was sent while it was gone, sends, and is handed nothing twice.
//    On MemoryStore this fails: the reloaded page would be a new identity with no channel.
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { chromium } from "playwright-core";
import type { ChannelRecord, JournalEntry } from "../mod.ts";
import { reaping, tempDir } from "./_helpers.ts";
import {
  browserScene,
  CHROMIUM_ARGS,
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

/** An error thrown in the page, as it crosses back: its class name, code and message. */
interface PageError {
  name: string;
  code?: string;
  message: string;
}

test("IndexedDbStore keeps records, blobs, key packages and journals, and refuses corrupt ones", {
  skip,
  timeout: 120_000,
}, async () => {
  assert.ok(browser, "chromium is not installed: run scripts/chromium.sh install");
  const dir = await tempDir();
  const site = await serveSdk(dir);
  const chrome = await chromium.launch({ executablePath: browser, args: CHROMIUM_ARGS });
  let log: string[] = [];
  try {
    const context = await chrome.newContext();
    const tab = await openSdkTab(context, site.origin);
    log = tab.log;
    const got = await tab.page.evaluate(async () => {
      const { IndexedDbStore } = (globalThis as unknown as PageGlobals).sdk;
      const caught = async (p: Promise<unknown>): Promise<PageError | "resolved"> => {
        try {
          await p;
          return "resolved";
        } catch (e) {
          const err = e as { name: string; code?: string; message: string };
          return { name: err.name, message: err.message, ...err.code ? { code: err.code } : {} };
        }
      };
      const a = new IndexedDbStore("unit-a");
      await a.open();
      const big = new Uint8Array([9, 9, 1, 2, 3, 9, 9]);
      const record: ChannelRecord = {
        channel: "acme/unit/one",
        group: big.subarray(2, 5),
        cursor: 7,
        buffer: [{ sender: "bob", seq: 7, time: "2026-01-01T00:00:00.000Z", text: "hi" }],
        active: true,
        pins: { bob: "did:key:z6Mkbob" },
        pending: { id: "aa", epoch: 3, commit: new Uint8Array([4]), group: new Uint8Array([5]) },
      };
      await a.saveChannel(record);
      await a.saveChannel({ ...record, channel: "acme/unit/two", cursor: 1 }, { durable: false });
      const [one, two] = await a.loadChannels();
      const firstLoad = {
        names: [one?.channel, two?.channel],
        group: [...one?.group ?? []],
        // A subarray is stored as its own bytes, not with the buffer around it.
        groupBuffer: one?.group.buffer.byteLength,
        same: JSON.stringify({ ...one, group: [...one!.group], pending: undefined }) ===
          JSON.stringify({ ...record, group: [1, 2, 3], pending: undefined }),
        pending: [...one?.pending?.commit ?? [], ...one?.pending?.group ?? []],
        twoCursor: two?.cursor,
      };

      const entries: JournalEntry[] = [{ reserve: { epoch: 3, gen: 10 } }, { delivered: 7 }, {
        delivered: 9,
        held: [8],
      }];
      await a.appendJournal("acme/unit/one", entries[0]!, { durable: true });
      await a.appendJournal("acme/unit/two", { tapped: 1 });
      await a.appendJournal("acme/unit/one", entries[1]!);
      await a.appendJournal("acme/unit/one", entries[2]!);
      const journal = await a.loadJournal("acme/unit/one");
      await a.clearJournal("acme/unit/one");
      const cleared = await a.loadJournal("acme/unit/one");
      const otherKept = await a.loadJournal("acme/unit/two");
      await a.appendJournal("acme/unit/one", { tapped: 2 });
      const afterClear = await a.loadJournal("acme/unit/one");
      await a.deleteChannel("acme/unit/two");
      const afterDelete = {
        channels: (await a.loadChannels()).map((r) => r.channel),
        journal: await a.loadJournal("acme/unit/two"),
      };

      await a.saveBlob("identity-key", new Uint8Array([1, 2, 3]));
      const blob = [...await a.loadBlob("identity-key") ?? []];
      const noBlob = await a.loadBlob("nothing");
      await a.saveKeyPackage({
        ref: "ab",
        keyPackage: new Uint8Array([1]),
        privateKey: new Uint8Array([2]),
        created: 5,
      });
      const kps = (await a.loadKeyPackages()).map((k) => [k.ref, [...k.privateKey], k.created]);
      await a.deleteKeyPackage("ab");
      const kpsAfter = await a.loadKeyPackages();

      // Another identity in the same origin sees none of it.
      const b = new IndexedDbStore("unit-b");
      await b.open();
      const other = {
        database: b.database,
        channels: await b.loadChannels(),
        blob: await b.loadBlob("identity-key"),
        journal: await b.loadJournal("acme/unit/one"),
      };
      await b.close();

      // One holder per identity: a second store object is refused until the first closes.
      const second = new IndexedDbStore("unit-a");
      const refused = await caught(second.open());
      await a.close();
      const admitted = await caught(second.open());
      const reopened = (await second.loadChannels()).map((r) => r.channel);

      // Corrupt records, written behind the store's back, are refused by name.
      const raw = await new Promise<IDBDatabase>((resolve, reject) => {
        const req = indexedDB.open("skytale/unit-a");
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      const put = (store: string, value: unknown, key?: string) =>
        new Promise<void>((resolve, reject) => {
          const tx = raw.transaction(store, "readwrite");
          tx.objectStore(store).put(value, key);
          tx.oncomplete = () => resolve();
          tx.onerror = () => reject(tx.error);
        });
      await put("channels", { channel: "acme/unit/bad", group: "0102", cursor: 0 });
      const badChannel = await caught(second.loadChannels());
      await put("channels", { ...record, channel: "acme/unit/bad", cursor: -1 });
      const badCursor = await caught(second.loadChannels());
      await put("blobs", "not bytes", "settings");
      const badBlob = await caught(second.loadBlob("settings"));
      await put("journal", { channel: "acme/unit/one", entry: 5 });
      const badJournal = await caught(second.loadJournal("acme/unit/one"));
      await put("keypackages", { ref: "cd", keyPackage: new Uint8Array([1]) });
      const badKeyPackage = await caught(second.loadKeyPackages());
      raw.close();
      await second.close();
      return {
        database: a.database,
        firstLoad,
        journal,
        cleared,
        otherKept,
        afterClear,
        afterDelete,
        blob,
        noBlob,
        kps,
        kpsAfter,
        other,
        refused,
        admitted,
        reopened,
        badChannel,
        badCursor,
        badBlob,
        badJournal,
        badKeyPackage,
      };
    });
    assert.equal(got.database, "skytale/unit-a");
    assert.deepEqual(got.firstLoad, {
      names: ["acme/unit/one", "acme/unit/two"],
      group: [1, 2, 3],
      groupBuffer: 3,
      same: true,
      pending: [4, 5],
      twoCursor: 1,
    });
    assert.deepEqual(got.journal, [{ reserve: { epoch: 3, gen: 10 } }, { delivered: 7 }, {
      delivered: 9,
      held: [8],
    }]);
    assert.deepEqual(got.cleared, []);
    assert.deepEqual(got.otherKept, [{ tapped: 1 }]);
    assert.deepEqual(got.afterClear, [{ tapped: 2 }]);
    assert.deepEqual(got.afterDelete, { channels: ["acme/unit/one"], journal: [] });
    assert.deepEqual(got.blob, [1, 2, 3]);
    assert.equal(got.noBlob, undefined);
    assert.deepEqual(got.kps, [["ab", [2], 5]]);
    assert.deepEqual(got.kpsAfter, []);
    assert.deepEqual(got.other, {
      database: "skytale/unit-b",
      channels: [],
      blob: undefined,
      journal: [],
    });
    assert.equal(typeof got.refused, "object");
    assert.deepEqual({ ...got.refused as PageError, message: "" }, {
      name: "StateError",
      code: "in_use",
      message: "",
    });
    assert.match((got.refused as PageError).message, /"skytale\/unit-a" is in use/);
    assert.equal(got.admitted, "resolved");
    assert.deepEqual(got.reopened, ["acme/unit/one"]);
    const corrupt: [unknown, RegExp][] = [
      [got.badChannel, /channel "acme\/unit\/bad" .*"group" is not bytes/],
      [got.badCursor, /channel "acme\/unit\/bad" .*"cursor" is not a seq/],
      [got.badBlob, /blob "settings" .*is not bytes/],
      [got.badJournal, /Journal of channel "acme\/unit\/one" .*not an object/],
      [got.badKeyPackage, /key package "cd" .*not bytes/],
    ];
    for (const [e, re] of corrupt) {
      assert.equal(typeof e, "object", `${re} was not refused`);
      assert.equal((e as PageError).code, "state_corrupt", (e as PageError).message);
      assert.equal((e as PageError).name, "StateError");
      assert.match((e as PageError).message, re);
    }
  } catch (e) {
    throw withPageLog(e, log);
  } finally {
    await chrome.close();
    await site.close();
  }
});

test(
  "a page agent on IndexedDbStore is reloaded and resumes: same member, nothing lost, nothing twice",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    assert.ok(browser, "chromium is not installed: run scripts/chromium.sh install");
    await reaping(async () => {
      const dir = await tempDir();
      const site = await serveSdk(dir);
      const scene = await browserScene(dir, site.origin, browser);
      const { relay, alice, chrome } = scene;
      const channel = "acme/browser/reload";
      const logs: string[][] = [];
      /** Makes the page's agent on IndexedDB ("browser-bob") and says who it is. */
      const start = (endpoint: string) => {
        const g = globalThis as unknown as PageGlobals;
        g.agent = new g.sdk.SkytaleChannelManager({
          identity: "browser-bob",
          endpoint,
          store: new g.sdk.IndexedDbStore("browser-bob"),
        });
        return g.agent.whoami().then((w) => w.did);
      };
      const texts = (msgs: { sender: string; text: string }[]) =>
        msgs.map((m) => [m.sender, m.text]);
      try {
        await alice.create(channel);
        const token = await alice.invite(channel);
        const context = await chrome.newContext();
        const tab = await openSdkTab(context, site.origin);
        logs.push(tab.log);
        const { page } = tab;

        const did = await page.evaluate(start, relay.url);
        await page.evaluate(async ({ channel, token }) => {
          const g = globalThis as unknown as PageGlobals;
          await g.agent.joinWithToken(channel, token, { timeout: 15 });
          await g.agent.send(channel, "hello before the reload");
        }, { channel, token });
        assert.deepEqual(texts(await alice.receive(channel, { timeout: 10 })), [
          ["browser-bob", "hello before the reload"],
        ]);
        await alice.send(channel, "seen before the reload");
        const before = await page.evaluate(async (channel) => {
          const g = globalThis as unknown as PageGlobals;
          return (await g.agent.receive(channel, { timeout: 10 })).map((m) => [m.sender, m.text]);
        }, channel);
        assert.deepEqual(before, [["alice", "seen before the reload"]]);

        // The tab goes away without closing its agent (as a reload or a crash would have it).
        await tab.reload();
        await alice.send(channel, "sent while the tab was gone");
        const didAfter = await page.evaluate(start, relay.url);
        assert.equal(didAfter, did, "the reloaded page is the same identity");
        const after = await page.evaluate(async (channel) => {
          const g = globalThis as unknown as PageGlobals;
          const summary = (await g.agent.channels()).find((c) => c.channel === channel);
          const msgs = await g.agent.receive(channel, { timeout: 10 });
          await g.agent.send(channel, "hello after the reload");
          return { members: summary?.members, texts: msgs.map((m) => [m.sender, m.text]) };
        }, channel);
        assert.deepEqual(after.members?.slice().sort(), ["alice", "browser-bob"]);
        // "seen before the reload" was handed out before: it is not handed out again.
        assert.deepEqual(after.texts, [["alice", "sent while the tab was gone"]]);
        assert.deepEqual(texts(await alice.receive(channel, { timeout: 10 })), [
          ["browser-bob", "hello after the reload"],
        ]);
        await alice.send(channel, "the last one");
        const last = await page.evaluate(async (channel) => {
          const g = globalThis as unknown as PageGlobals;
          return (await g.agent.receive(channel, { timeout: 10 })).map((m) => [m.sender, m.text]);
        }, channel);
        assert.deepEqual(last, [["alice", "the last one"]], "and none comes late either");

        // A second tab of the same identity in the same origin is refused while the first holds it.
        const second = await openSdkTab(context, site.origin);
        logs.push(second.log);
        const refused = await second.page.evaluate(async (endpoint) => {
          const g = globalThis as unknown as PageGlobals;
          const agent = new g.sdk.SkytaleChannelManager({
            identity: "browser-bob",
            endpoint,
            store: new g.sdk.IndexedDbStore("browser-bob"),
          });
          try {
            await agent.whoami();
            return "admitted";
          } catch (e) {
            const err = e as { name: string; code?: string };
            return `${err.name} ${err.code}`;
          } finally {
            await agent.close();
          }
        }, relay.url);
        assert.equal(refused, "StateError in_use");
        // Once the first tab's agent closes, the second one takes over the same state.
        await page.evaluate(() => (globalThis as unknown as PageGlobals).agent.close());
        const taken = await second.page.evaluate(async ({ endpoint, channel }) => {
          const g = globalThis as unknown as PageGlobals;
          const agent = new g.sdk.SkytaleChannelManager({
            identity: "browser-bob",
            endpoint,
            store: new g.sdk.IndexedDbStore("browser-bob"),
          });
          const did = (await agent.whoami()).did;
          const active = (await agent.channels()).some((c) => c.channel === channel);
          await agent.close();
          return { did, active };
        }, { endpoint: relay.url, channel });
        assert.deepEqual(taken, { did, active: true });
      } catch (e) {
        throw withPageLog(e, logs.flat());
      } finally {
        await scene.close();
        await site.close();
      }
    });
  },
);
