/**
 * The Skytale MCP tools: what they need of a channel manager
 * ({@linkcode ChannelManagerLike}) and {@linkcode registerSkytaleTools}, which
 * registers the fourteen of them. Each family lives in `src/mcp/tools/`
 * (channel lifecycle, joining, messaging, members), with the argument schemas
 * in `tools/_args.ts` and the deadline and error mapping in `tools/_result.ts`:
 * every `SkytaleError` becomes an `isError: true` result that says
 * what to fix; no tool waits past its deadline.
 *
 * @module
 */
import type { McpServer } from "./_sdk.ts";
import { type ToolName, ToolNames } from "./tools/_names.ts";
import { type RegisterTool, toolRunner } from "./tools/_result.ts";
import { channelTools } from "./tools/channels.ts";
import { joiningTools } from "./tools/joining.ts";
import { memberTools } from "./tools/members.ts";
import { messagingTools } from "./tools/messaging.ts";

export { MAX_RECEIVE_TIMEOUT, type ToolName, ToolNames } from "./tools/_names.ts";
export { errorResult } from "./tools/_result.ts";
export type {
  ChannelListing,
  ChannelManagerLike,
  ReceivedMessage,
  ReceiveOptionsLike,
  ToolOptions,
} from "./tools/_types.ts";
import type { ChannelManagerLike, ToolOptions } from "./tools/_types.ts";

/** Every tool's registration, by name: the compiler sees that none is missing. */
const REGISTER: Record<ToolName, RegisterTool> = {
  ...channelTools,
  ...joiningTools,
  ...messagingTools,
  ...memberTools,
};

/** The order in which `tools/list` shows them. */
const ORDER: readonly ToolName[] = [
  ToolNames.createChannel,
  ToolNames.keyPackage,
  ToolNames.addMember,
  ToolNames.joinChannel,
  ToolNames.send,
  ToolNames.receive,
  ToolNames.wait,
  ToolNames.channels,
  ToolNames.invite,
  ToolNames.joinWithToken,
  ToolNames.members,
  ToolNames.whoami,
  ToolNames.removeMember,
  ToolNames.leave,
];

/**
 * Registers the fourteen Skytale tools on an MCP server.
 *
 * @example
 * ```ts ignore
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * const server = new McpServer({ name: "skytale", version: "0.1.0" });
 * registerSkytaleTools(server, new SkytaleChannelManager({ identity: "alice" }));
 * ```
 *
 * @param server The server to add the tools to.
 * @param manager The channel manager the tools call.
 * @param options Deadlines.
 */
export function registerSkytaleTools(
  server: McpServer,
  manager: ChannelManagerLike,
  options: ToolOptions = {},
): void {
  const kit = {
    server,
    manager,
    run: toolRunner(options.toolTimeoutSeconds ?? 60),
    grace: options.receiveGraceSeconds ?? 5,
  };
  for (const name of ORDER) REGISTER[name](kit);
}
