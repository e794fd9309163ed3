/**
 * MCP over end-to-end encrypted (MLS) channels: an MCP SDK `Transport` for
 * clients, {@linkcode SkytaleTransport}, and {@linkcode serveChannel}, which
 * answers every member of a channel with its own MCP session.
 *
 * A member joined with an invite from `skytale expose` passes the did it
 * prints as `serverDid`; here both ends run in one process:
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
 * // The host answers each member of the channel with its own MCP server.
 * await using _serving = await serveChannel(host, "acme/tools/mcp", () => createMcpServer(host));
 * await using transport = new SkytaleTransport(user, "acme/tools/mcp", {
 *   serverDid: (await host.whoami()).did,
 * });
 * const client = new Client({ name: "user", version: "1.0.0" });
 * await client.connect(transport);
 * const { tools } = await client.listTools();
 * assert.ok(tools.some((t) => t.name === "skytale_send"));
 * ```
 *
 * @module
 */
export {
  BridgeErrorCodes,
  type ChannelServing,
  type ChannelSession,
  type JsonRpcMessage,
  type McpServerLike,
  type McpTransport,
  serveChannel,
  type ServeChannelOptions,
  SkytaleTransport,
  type SkytaleTransportOptions,
  type TaggedChannels,
  type TaggedMessage,
  type TransportSendOptions,
} from "./src/mcp/transport.ts";
