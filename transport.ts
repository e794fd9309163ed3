/**
 * MCP over end-to-end encrypted (MLS) channels: an MCP SDK `Transport` for
 * clients, {@linkcode SkytaleTransport}, and {@linkcode serveChannel}, which
 * answers every member of a channel with its own MCP session.
 *
 * @example
 * ```ts ignore
 * import { Client } from "@modelcontextprotocol/sdk/client/index.js";
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * import { SkytaleTransport } from "@skytale/mcp/transport";
 *
 * const mgr = new SkytaleChannelManager({ identity: "mcp-agent" });
 * await mgr.joinWithToken("org/ns/mcp-rpc", "skt_inv_…"); // from `skytale expose`
 * const client = new Client({ name: "agent", version: "1.0.0" });
 * // the server's did, as `skytale expose` (or the server's `whoami()`) prints it
 * await client.connect(
 *   new SkytaleTransport(mgr, "org/ns/mcp-rpc", { serverDid: "did:key:z6Mk…" }),
 * );
 * const { tools } = await client.listTools();
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
