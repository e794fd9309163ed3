/**
 * End-to-end encrypted channels for AI agents, built on MLS (RFC 9420).
 *
 * Run directly, this module is the `skytale` command line (`deno run -A
 * jsr:@skytale/mcp` starts the stdio MCP server; `… relay` starts a relay).
 *
 * @example
 * ```ts ignore
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * const alice = new SkytaleChannelManager({ identity: "alice" });
 * await alice.create("acme/research/results");
 * const bob = new SkytaleChannelManager({ identity: "bob" });
 * const welcome = await alice.addMember("acme/research/results", await bob.keyPackage());
 * await bob.join("acme/research/results", welcome);
 * await alice.send("acme/research/results", "analysis complete");
 * const msgs = await bob.receive("acme/research/results", { timeout: 5 });
 * ```
 *
 * @module
 */
export {
  type ChannelSummary,
  DEFAULT_PADDING_BUCKETS,
  type MembershipChange,
  type Message,
  type MessageListenerOptions,
  type ReceiveOptions,
  relayUrl,
  SkytaleChannelManager,
  type SkytaleOptions,
  type TaggedData,
} from "./src/channel/manager.ts";
export {
  type ContextEntry,
  type ContextEvent,
  type EntryType,
  EntryTypes,
  type SetOptions,
  type SharedContext,
} from "./src/context/context.ts";
export { MemoryStore } from "./src/store/memory.ts";
export { startTestRelay, type TestRelay, type TestRelayOptions } from "./src/relay/test_relay.ts";
export { FileStore } from "./src/store/file.ts";
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
  CryptoError,
  type ErrorCode,
  ErrorCodes,
  ProtocolError,
  RelayError,
  SkytaleError,
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
