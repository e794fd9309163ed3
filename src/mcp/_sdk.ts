/**
 * The one place that imports `@modelcontextprotocol/sdk` (with `_sdk_server.ts`,
 * its stdio-server part, which the stdio server imports alone to start fast).
 *
 * The SDK's `"./*"` export pattern maps `…/server/mcp.js` to the type file
 * `dist/esm/server/mcp.js.d.ts`, which does not exist, so `deno check` fails
 * with TS2307 on every `.js` subpath (modelcontextprotocol/typescript-sdk#2701;
 * `tsc` is spared by `typesVersions`, which Deno ignores). Each re-export below
 * keeps the `.js` specifier that Node, Bun and Deno all resolve at run time to
 * the same `dist/esm/…` file, and tells Deno's type checker, with `@ts-types`,
 * to take the types from the extension-less subpath, whose `"types"` target
 * (`dist/esm/…/x.d.ts`) does exist. Comments are ignored by Node and Bun.
 * Drop the `@ts-types` lines once the SDK ships a `"./*.js"` export.
 *
 * @module
 */

export { completable, McpServer, ResourceTemplate, StdioServerTransport } from "./_sdk_server.ts";
// @ts-types="@modelcontextprotocol/sdk/server/webStandardStreamableHttp"
export { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/types"
export {
  CreateMessageRequestSchema,
  isInitializeRequest,
  LoggingMessageNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
// @ts-types="@modelcontextprotocol/sdk/types"
export type {
  CallToolResult,
  JSONRPCMessage,
  MessageExtraInfo,
} from "@modelcontextprotocol/sdk/types.js";
// @ts-types="@modelcontextprotocol/sdk/shared/transport"
export type {
  Transport,
  TransportSendOptions,
} from "@modelcontextprotocol/sdk/shared/transport.js";
// @ts-types="@modelcontextprotocol/sdk/client/index"
export { Client } from "@modelcontextprotocol/sdk/client/index.js";
// @ts-types="@modelcontextprotocol/sdk/client/stdio"
export { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
// @ts-types="@modelcontextprotocol/sdk/client/streamableHttp"
export { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/inMemory"
export { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
