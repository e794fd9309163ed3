/**
 * The MCP baseline server for `bench/mcp.ts`: the MCP SDK's `McpServer` with a
 * single `echo` tool over stdio, nothing else — what any stdio MCP server in
 * TypeScript costs on this runtime.
 *
 * @module
 */
import { z } from "zod";
import { McpServer, StdioServerTransport } from "../src/mcp/_sdk_server.ts";
import { processStdio } from "../src/runtime/stdio.ts";

const server = new McpServer({ name: "bench-min", version: "0.0.0" });
server.registerTool(
  "echo",
  { description: "Echo a message", inputSchema: { channel: z.string(), message: z.string() } },
  ({ message }) => ({ content: [{ type: "text", text: message }] }),
);
const { stdin, stdout } = processStdio();
await server.connect(new StdioServerTransport(stdin, stdout));
