/**
 * {@linkcode startTestRelay}: a relay in this process, on a free loopback
 * port, with an in-memory log, for examples, documentation and tests.
 *
 * The relay server is loaded by `await import()` when it starts, so this
 * module (re-exported by `mod.ts`) adds nothing to the SDK's static import
 * graph but itself.
 *
 * @module
 */
/** Options of {@linkcode startTestRelay}. */
export interface TestRelayOptions {
  /** The interface to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** The port (default 0: a free one). */
  port?: number;
  /** Also log the relay's `info` and `debug` lines to stderr (default: warnings and errors only). */
  verbose?: boolean;
}

/** A relay running in this process (see {@linkcode startTestRelay}). */
export interface TestRelay extends AsyncDisposable {
  /** Its WebSocket URL, e.g. `ws://127.0.0.1:41234`: a manager's `endpoint`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** Stops serving, closes its connections and drops its log (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts a relay in this process on a free loopback port, storing in memory
 * and accepting every connection: give its `url` to managers as `endpoint`.
 * Closing it (or leaving an `await using` block) stops it, so a program or
 * test that used it exits by itself. Not for production: nothing is kept and
 * nobody is authenticated.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 *
 * await using relay = await startTestRelay();
 * await using alice = new SkytaleChannelManager({
 *   identity: "alice",
 *   endpoint: relay.url,
 *   store: new MemoryStore(),
 * });
 * await alice.create("acme/docs/relay");
 * assert.deepEqual((await alice.channels()).map((c) => c.channel), ["acme/docs/relay"]);
 * ```
 *
 * @param options Interface, port and logging.
 * @returns The running relay.
 */
export async function startTestRelay(options: TestRelayOptions = {}): Promise<TestRelay> {
  const [{ jsonLog, startRelay }, { MemoryLog }] = await Promise.all([
    import("./server.ts"),
    import("./log/memory.ts"),
  ]);
  const relay = await startRelay({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    log: new MemoryLog(),
    logger: (level, msg, fields) => {
      if (options.verbose || level === "warn" || level === "error") jsonLog(level, msg, fields);
    },
  });
  return {
    url: relay.url,
    port: relay.port,
    close: () => relay.close(),
    [Symbol.asyncDispose]: () => relay.close(),
  };
}
