// The stdio MCP server's manager loads on first use (src/mcp/_lazy_manager.ts): `initialize` is
// answered before the channel manager's modules load. What callers see must not change.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lazyManager } from "../src/mcp/_lazy_manager.ts";

type Listener = (...args: unknown[]) => void;

class Fake {
  readonly identity = "alice";
  listeners = new Map<string, Set<Listener>>();
  contextSubs = new Set<Listener>();
  closed = false;
  on(event: string, fn: Listener): () => void {
    const set = this.listeners.get(event) ?? new Set();
    this.listeners.set(event, set);
    set.add(fn);
    return () => set.delete(fn);
  }
  emit(event: string, ...args: unknown[]): void {
    for (const fn of this.listeners.get(event) ?? []) fn(...args);
  }
  channels(): Promise<string[]> {
    return Promise.resolve(["acme/a/b"]);
  }
  context(channel: string) {
    return {
      list: () => Promise.resolve([{ channel, key: "k" }]),
      subscribe: (fn: Listener) => {
        this.contextSubs.add(fn);
        return () => this.contextSubs.delete(fn);
      },
    };
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

function setup() {
  let loads = 0;
  let made: Fake | undefined;
  const m = lazyManager<Fake>("alice", () => {
    loads++;
    made = new Fake();
    return Promise.resolve(made);
  });
  return { m, loads: () => loads, made: () => made };
}

test("nothing loads for identity, on() or close(); a method call loads once", async () => {
  const { m, loads, made } = setup();
  assert.equal(m.identity, "alice");
  const seen: unknown[] = [];
  const off = m.on("message", (x) => seen.push(x));
  const offEarly = m.on("message", () => seen.push("removed before load"));
  offEarly();
  assert.equal(loads(), 0);
  assert.deepEqual(await m.channels(), ["acme/a/b"]);
  assert.deepEqual(await m.channels(), ["acme/a/b"]);
  assert.equal(loads(), 1);
  made()!.emit("message", 1);
  off();
  made()!.emit("message", 2);
  assert.deepEqual(seen, [1], "attached at load, detached by its unsubscribe");
  await m.close();
  assert.ok(made()!.closed);
});

test("close() before any use loads nothing; the object is not a thenable", async () => {
  const { m, loads } = setup();
  assert.equal((m as unknown as { then?: unknown }).then, undefined);
  assert.equal(await Promise.resolve(m), m);
  await m.close();
  assert.equal(loads(), 0);
});

test("a context before load forwards its calls; its subscribe loads and attaches", async () => {
  const { m, loads, made } = setup();
  const ctx = m.context("acme/a/b");
  const off = ctx.subscribe(() => {});
  assert.deepEqual(await ctx.list(), [{ channel: "acme/a/b", key: "k" }]);
  assert.equal(loads(), 1);
  assert.equal(made()!.contextSubs.size, 1);
  off();
  assert.equal(made()!.contextSubs.size, 0);
});

test("a failed load rejects the call with its error", async () => {
  const m = lazyManager<Fake>("bob", () => Promise.reject(new Error("no relay module")));
  await assert.rejects(m.channels(), /no relay module/);
});
