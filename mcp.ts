/**
 * The Skytale MCP server: fourteen tools that give a model end-to-end encrypted
 * (MLS) channels to other agents: create a channel, invite or add members,
 * join, send, receive, wait, list, remove, leave. Channels are also resources
 * (`skytale://channel/org/ns/svc`, subscribable), with prompts for the common
 * flows; `--claude-channel` pushes messages to Claude Code as channel events.
 *
 * Run directly, this module is the stdio MCP server, configured by
 * `SKYTALE_IDENTITY`, `SKYTALE_RELAY` (unset: an embedded relay on
 * `127.0.0.1:5000`), `SKYTALE_API_KEY`, `SKYTALE_API_URL` and
 * `SKYTALE_DATA_DIR`; `--http HOST:PORT` serves Streamable HTTP instead, where
 * every request carries `Authorization: Bearer <token>` (`SKYTALE_MCP_TOKEN`, or
 * the token kept in `<SKYTALE_DATA_DIR>/mcp-http.token`).
 *
 * `createMcpServer(manager)` connects to any MCP transport (stdio, Streamable
 * HTTP); here one agent serves its tools to another over their channel, and
 * the other calls one:
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Client } from "@modelcontextprotocol/sdk/client";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 * import { createMcpServer } from "@skytale/mcp/mcp";
 * import { serveChannel, SkytaleTransport } from "@skytale/mcp/transport";
 *
 * await using relay = await startTestRelay();
 * const agent = (identity: string) =>
 *   new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
 * await using host = agent("host");
 * await using user = agent("user");
 * await host.create("acme/tools/mcp");
 * await user.join("acme/tools/mcp", await host.addMember("acme/tools/mcp", await user.keyPackage()));
 *
 * await using _serving = await serveChannel(host, "acme/tools/mcp", () => createMcpServer(host));
 * await using transport = new SkytaleTransport(user, "acme/tools/mcp", {
 *   serverDid: (await host.whoami()).did,
 * });
 * const client = new Client({ name: "user", version: "1.0.0" });
 * await client.connect(transport);
 * const result = await client.callTool({ name: "skytale_whoami", arguments: {} });
 * assert.match(JSON.stringify(result.content), /did:key:z6Mk/);
 * ```
 *
 * @module
 */
export {
  createMcpServer,
  type McpServerOptions,
  type McpTransportLike,
  SERVER_NAME,
  SERVER_VERSION,
  type SkytaleMcpServer,
} from "./src/mcp/server.ts";
export {
  type ChannelListing,
  type ChannelManagerLike,
  MAX_RECEIVE_TIMEOUT,
  type ReceivedMessage,
  type ReceiveOptionsLike,
  type ToolName,
  ToolNames,
  type ToolOptions,
} from "./src/mcp/tools.ts";
export {
  type ContextManagerLike,
  type ContextToolName,
  ContextToolNames,
} from "./src/mcp/context_tools.ts";
export { serveStdio, type StdioServing } from "./src/mcp/stdio.ts";
export {
  channelContent,
  CLAUDE_CHANNEL,
  type ClaudeChannelOptions,
} from "./src/mcp/claude_channel.ts";
export { CHANNEL_URI_PREFIX, channelUri } from "./src/mcp/resources.ts";
export { PromptNames } from "./src/mcp/prompts.ts";
export {
  checkHostAndOrigin,
  DEFAULT_MAX_SESSIONS,
  DEFAULT_SESSION_IDLE_MS,
  type HttpServeOptions,
  type HttpServing,
  serveHttp,
} from "./src/mcp/http.ts";

if (import.meta.main) {
  const { runCli } = await import("./src/cli/main.ts");
  const { cliArgs, exit } = await import("./src/runtime/env.ts");
  const code = await runCli(["mcp", ...cliArgs()]);
  if (code !== 0) exit(code);
}
