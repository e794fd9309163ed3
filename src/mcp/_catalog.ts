/**
 * The Skytale server's tools and prompts, which `buildMcpServer` registers on
 * the first request after `initialize` (`_first_request.ts`): this module and
 * the ones it imports (the tool families, their zod schemas) load only then.
 *
 * @module
 */
import type { McpServer } from "./_sdk_server.ts";
import { hasAudit, registerAuditTools } from "./audit_tools.ts";
import { hasContext, registerContextTools } from "./context_tools.ts";
import { registerSkytalePrompts } from "./prompts.ts";
import { type ChannelManagerLike, registerSkytaleTools, type ToolOptions } from "./tools.ts";

/**
 * Registers the tools (the shared-context and audit ones when the manager has
 * them) and the prompts, in the order `tools/list` and `prompts/list` show them.
 *
 * @param server The server.
 * @param manager The channel manager the tools call.
 * @param options Deadlines.
 */
export function registerCatalog(
  server: McpServer,
  manager: ChannelManagerLike,
  options: ToolOptions,
): void {
  registerSkytaleTools(server, manager, options);
  if (hasContext(manager)) registerContextTools(server, manager, options);
  if (hasAudit(manager)) registerAuditTools(server, manager, options);
  registerSkytalePrompts(server, manager);
}
