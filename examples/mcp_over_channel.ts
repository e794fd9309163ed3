/**
 * MCP over an end-to-end encrypted channel: a tools agent serves an MCP SDK
 * `McpServer` to the members of its channel (`serveChannel`), and another
 * member calls its tool with an MCP SDK `Client` over a `SkytaleTransport`.
 * Requests and answers are MLS messages; the relay sees ciphertext only.
 *
 * Both agents and the relay run in this process (`startTestRelay`, state in
 * memory), so nothing is left behind and the program ends by itself. Across
 * processes, the tools agent would run `skytale expose` (or `serveChannel`),
 * and the caller would join with the invite and `serverDid` it prints.
 *
 * Run it from the repository with any of:
 *
 * ```sh
 * deno run -A examples/mcp_over_channel.ts
 * node examples/mcp_over_channel.ts
 * bun examples/mcp_over_channel.ts
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { Client } from "@modelcontextprotocol/sdk/client";
// The SDK's .js subpaths lack types for Deno (modelcontextprotocol/typescript-sdk#2701): take them here.
// @ts-types="@modelcontextprotocol/sdk/server/mcp"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
import { serveChannel, SkytaleTransport } from "@skytale/mcp/transport";

const CHANNEL = "acme/tools/calculator";

await using relay = await startTestRelay();
const agent = (identity: string) =>
  new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
await using tools = agent("tools");
await using user = agent("user");
await tools.create(CHANNEL);
await user.join(CHANNEL, await tools.addMember(CHANNEL, await user.keyPackage()));

// One McpServer per member's session, made by this factory.
await using serving = await serveChannel(tools, CHANNEL, (session) => {
  const server = new McpServer({ name: "calculator", version: "1.0.0" });
  server.registerTool("add", {
    description: "Adds two numbers",
    inputSchema: { a: z.number(), b: z.number() },
  }, ({ a, b }) => ({
    content: [{ type: "text", text: `${a} + ${b} = ${a + b} (asked by ${session.identity})` }],
  }));
  return server;
});

await using transport = new SkytaleTransport(user, CHANNEL, {
  serverDid: (await tools.whoami()).did,
});
const client = new Client({ name: "user", version: "1.0.0" });
await client.connect(transport);
const { tools: list } = await client.listTools();
console.log("tools:", list.map((t) => t.name).join(", "));
const result = await client.callTool({ name: "add", arguments: { a: 2, b: 40 } });
const [first] = result.content as { type: string; text?: string }[];
console.log("add:", first?.text, `(${serving.sessions().length} session)`);
if (first?.text !== "2 + 40 = 42 (asked by user)") throw new Error("Unexpected answer");
