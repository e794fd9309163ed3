/**
 * The part of `@modelcontextprotocol/sdk` that a stdio MCP server needs:
 * `McpServer` (with `ResourceTemplate` and `completable`) and
 * `StdioServerTransport`, and nothing else, so that starting
 * the stdio server does not load the SDK's clients and HTTP transports
 * (docs/DECISIONS.md, "Cold start"). `_sdk.ts` re-exports these with the rest;
 * the `@ts-types` lines are explained there.
 *
 * @module
 */

// @ts-types="@modelcontextprotocol/sdk/server/mcp"
export { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
// @ts-types="@modelcontextprotocol/sdk/server/completable"
export { completable } from "@modelcontextprotocol/sdk/server/completable.js";
// @ts-types="@modelcontextprotocol/sdk/server/stdio"
export { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
// @ts-types="@modelcontextprotocol/sdk/types"
export {
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
