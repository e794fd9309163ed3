/**
 * End-to-end encrypted channels for AI agents, built on MLS (RFC 9420).
 *
 * Run directly, this module is the `skytale` command line (`deno run -A
 * jsr:@skytale/mcp` starts the stdio MCP server; `… relay` starts a relay).
 *
 * Two agents on a relay in this process ({@linkcode startTestRelay}; leave out
 * `endpoint` to use the user's embedded local relay, and `store` to keep state
 * in files under `~/.skytale`):
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
 * await alice.create("acme/research/results");
 * await using bob = new SkytaleChannelManager({
 *   identity: "bob",
 *   endpoint: relay.url,
 *   store: new MemoryStore(),
 * });
 * const welcome = await alice.addMember("acme/research/results", await bob.keyPackage());
 * await bob.join("acme/research/results", welcome);
 * await alice.send("acme/research/results", "analysis complete");
 * const [msg] = await bob.receive("acme/research/results", { timeout: 5 });
 * assert.equal(msg?.text, "analysis complete");
 * assert.equal(msg?.senderId, (await alice.whoami()).did);
 * ```
 *
 * @module
 */
export { relayUrl, SkytaleChannelManager } from "./src/channel/manager.ts";
export {
  type ChannelSummary,
  DEFAULT_PADDING_BUCKETS,
  type MembershipChange,
  type Message,
  type MessageListenerOptions,
  type ReceiveOptions,
  type SkytaleOptions,
  type TaggedData,
} from "./src/channel/types.ts";
export {
  type ContextEntry,
  type ContextEvent,
  type EntryType,
  EntryTypes,
  type SetOptions,
  type SharedContext,
} from "./src/context/context.ts";
export type { AuditEntry, AuditEvent, AuditProblem, AuditReport } from "./src/audit/chain.ts";
export { MemoryStore } from "./src/store/memory.ts";
export { startTestRelay, type TestRelay, type TestRelayOptions } from "./src/relay/test_relay.ts";
export { FileStore } from "./src/store/file.ts";
export { IndexedDbStore } from "./src/store/indexeddb.ts";
// The contract of a custom `Store`: the records it keeps (applications never need them).
export type {
  ChannelRecord,
  JournalEntry,
  KeyPackageRecord,
  PendingCommit,
  RememberedWelcome,
  Store,
  StoredMessage,
} from "./src/store/types.ts";
export {
  didKey,
  didPublicKey,
  fingerprint,
  type IdentityKey,
  type Member,
} from "./src/identity.ts";
export { type ChannelName, parseChannelName } from "./src/validate.ts";
export {
  AuthError,
  type CodeOf,
  CryptoError,
  type ErrorCode,
  ErrorCodes,
  ErrorFamilies,
  InterruptedError,
  ProtocolError,
  RelayError,
  SkytaleError,
  skytaleError,
  StateError,
  UsageError,
  ValidationError,
} from "./src/errors.ts";

if (import.meta.main) {
  const { runCli } = await import("./src/cli/main.ts");
  const { cliArgs, exit } = await import("./src/runtime/env.ts");
  const code = await runCli(cliArgs());
  // The command is done and has flushed its output: exit now. Waiting for the event loop to drain
  // can take long: Deno keeps a server alive ~13 s after shutdown when a WebSocket peer died
  // without a close handshake.
  exit(code);
}
