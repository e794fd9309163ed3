/**
 * MCP tools for a channel's shared context (`src/context/`): set, get and
 * list entries, and hand a task to another member. Registered next to the
 * channel tools when the manager has `context(channel)`.
 *
 * @module
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import type { ContextEntry, EntryType } from "../context/context.ts";
import type { McpServer } from "./_sdk.ts";
import { shortChannelArg as channelArg } from "./tools/_args.ts";
import { text, type ToolRun, toolRunner } from "./tools/_result.ts";
import type { ContextManagerLike } from "./tools/_types.ts";

export { type ContextManagerLike, hasContext } from "./tools/_types.ts";

/** The names of the shared-context tools. */
export const ContextToolNames = {
  set: "skytale_context_set",
  get: "skytale_context_get",
  list: "skytale_context_list",
  handoff: "skytale_handoff",
} as const;

/** The name of one shared-context tool. */
export type ContextToolName = typeof ContextToolNames[keyof typeof ContextToolNames];

const TYPES = ["note", "artifact", "task", "handoff", "decision"] as const;

const keyArg = z
  .string({ error: 'key is required: pass the entry\'s key, e.g. "plan"' })
  .min(1, { error: "key is empty: pass the entry's key" })
  .max(256, { error: "key is too long: use at most 256 characters" })
  .describe('The entry\'s key, e.g. "plan" or "results/summary"');
const typeArg = z
  .enum(TYPES, { error: `type must be one of ${TYPES.join(", ")}` });

function render(e: ContextEntry): string {
  const v = typeof e.value === "string" ? e.value : JSON.stringify(e.value);
  const extra = [
    e.visibleTo ? `visible to ${e.visibleTo.length}` : "",
    e.expires ? `expires ${e.expires}` : "",
  ].filter((x) => x).join(", ");
  return `- ${e.key} [${e.type}] by ${e.author.name} at ${e.updated}${
    extra ? ` (${extra})` : ""
  }: ${v}`;
}

function structured(e: ContextEntry): Record<string, unknown> {
  return {
    key: e.key,
    type: e.type,
    value: e.value,
    author: e.author.name,
    author_id: e.author.did,
    updated: e.updated,
    ...(e.expires ? { expires: e.expires } : {}),
    ...(e.visibleTo ? { visible_to: e.visibleTo } : {}),
    ...(e.to ? { to: e.to } : {}),
  };
}

/**
 * Registers the four shared-context tools on an MCP server.
 *
 * @example
 * ```ts ignore
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * const server = new McpServer({ name: "skytale", version: "0.1.0" });
 * registerContextTools(server, new SkytaleChannelManager({ identity: "alice" }));
 * ```
 *
 * @param server The server.
 * @param manager The manager whose contexts the tools use.
 * @param options `toolTimeoutSeconds` (default 60).
 */
export function registerContextTools(
  server: McpServer,
  manager: ContextManagerLike,
  options: { toolTimeoutSeconds?: number } = {},
): void {
  const run = toolRunner(options.toolTimeoutSeconds ?? 60);
  registerSet(server, manager, run);
  registerGet(server, manager, run);
  registerList(server, manager, run);
  registerHandoff(server, manager, run);
}

/** `skytale_context_set`: writes an entry. */
function registerSet(server: McpServer, manager: ContextManagerLike, run: ToolRun): void {
  server.registerTool(ContextToolNames.set, {
    title: "Write to the shared context",
    description:
      "Write an entry into a channel's shared context: a key-value document every member of the channel holds (notes, artifacts, tasks, decisions). " +
      "The last write to a key wins for everyone. Use visible_to (names or dids of members) to make the value readable only by them, and ttl (seconds) for entries that should disappear. " +
      "Returns the entry as stored.",
    inputSchema: {
      channel: channelArg,
      key: keyArg,
      value: z.unknown().describe("The value: text or any JSON"),
      type: typeArg.default("note").describe(
        `The kind of entry: ${TYPES.join(", ")} (default note)`,
      ),
      visible_to: z.array(z.string().min(1)).max(100).optional().describe(
        "Members (names or dids) who may read the value; leave out for every member",
      ),
      ttl: z.number().positive({ error: "ttl must be a positive number of seconds" }).optional()
        .describe("Seconds until the entry disappears"),
    },
    annotations: { destructiveHint: false, idempotentHint: true, openWorldHint: true },
  }, ({ channel, key, value, type, visible_to, ttl }) =>
    run(ContextToolNames.set, async () => {
      if (value === undefined) {
        throw new ValidationError("invalid_argument", "value is required: pass text or JSON");
      }
      const ctx = manager.context(channel);
      const e = await ctx.set(key, value, {
        type: type as EntryType,
        ...(visible_to ? { visibleTo: visible_to } : {}),
        ...(ttl !== undefined ? { ttl } : {}),
      });
      const sent = await ctx.synced(5000);
      return text(
        `Wrote "${key}" to the shared context of "${channel}"${
          sent ? "" : " (stored here; it reaches the others once the relay is reachable)"
        }.\n${render(e)}`,
        { channel, entry: structured(e), sent },
      );
    }));
}

/** `skytale_context_get`: reads one entry. */
function registerGet(server: McpServer, manager: ContextManagerLike, run: ToolRun): void {
  server.registerTool(ContextToolNames.get, {
    title: "Read the shared context",
    description:
      "Read one entry of a channel's shared context by key: its value, type, who wrote it and when. " +
      "Entries that expired, were deleted, or are restricted to other members are reported as not found.",
    inputSchema: { channel: channelArg, key: keyArg },
    annotations: { readOnlyHint: true, openWorldHint: false },
  }, ({ channel, key }) =>
    run(ContextToolNames.get, async () => {
      const e = await manager.context(channel).get(key);
      if (!e) {
        return text(
          `No entry "${key}" in the shared context of "${channel}" that ${manager.identity} can read. Call skytale_context_list to see the keys.`,
          { channel, key, found: false },
        );
      }
      return text(render(e), { channel, found: true, entry: structured(e) });
    }));
}

/** `skytale_context_list`: lists the readable entries. */
function registerList(server: McpServer, manager: ContextManagerLike, run: ToolRun): void {
  server.registerTool(ContextToolNames.list, {
    title: "List the shared context",
    description:
      "List the entries of a channel's shared context that this agent can read (notes, artifacts, tasks, handoffs, decisions), by key. " +
      "Filter by type or by key prefix. Handoffs addressed to you show here with type handoff.",
    inputSchema: {
      channel: channelArg,
      type: typeArg.optional().describe(`Only entries of this kind: ${TYPES.join(", ")}`),
      prefix: z.string().max(256).optional().describe("Only keys starting with this"),
    },
    annotations: { readOnlyHint: true, openWorldHint: false },
  }, ({ channel, type, prefix }) =>
    run(ContextToolNames.list, async () => {
      const entries = await manager.context(channel).list({
        ...(type ? { type: type as EntryType } : {}),
        ...(prefix !== undefined ? { prefix } : {}),
      });
      const s = { channel, entries: entries.map(structured) };
      if (entries.length === 0) {
        return text(
          `The shared context of "${channel}" has no entries ${manager.identity} can read${
            type || prefix ? " with that filter" : ""
          }. Write one with skytale_context_set.`,
          s,
        );
      }
      return text(
        `${entries.length} entr${
          entries.length === 1 ? "y" : "ies"
        } in the shared context of "${channel}":\n${entries.map(render).join("\n")}`,
        s,
      );
    }));
}

/** `skytale_handoff`: hands a task to another member. */
function registerHandoff(server: McpServer, manager: ContextManagerLike, run: ToolRun): void {
  server.registerTool(ContextToolNames.handoff, {
    title: "Hand a task to another agent",
    description:
      "Hand a task over to another member of a channel: it appears in the shared context as a handoff entry naming them, and their agent is notified. " +
      "Say what you tried already, so they do not repeat it. Returns the handoff entry.",
    inputSchema: {
      channel: channelArg,
      to: z.string({ error: "to is required: pass the member's name or did (see skytale_members)" })
        .min(1, { error: "to is empty: pass the member's name or did (see skytale_members)" })
        .describe("The member to hand the task to: name or did"),
      task: z.string({ error: "task is required: say what is to be done" })
        .min(1, { error: "task is empty: say what is to be done" })
        .describe("What is to be done"),
      tried: z.array(z.string()).max(100).optional().describe("What was tried already"),
    },
    annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
  }, ({ channel, to, task, tried }) =>
    run(ContextToolNames.handoff, async () => {
      const ctx = manager.context(channel);
      const e = await ctx.handoff(to, task, tried ? { tried } : {});
      const sent = await ctx.synced(5000);
      return text(
        `Handed "${task}" to ${to} on "${channel}" as ${e.key}${
          sent ? "" : " (stored here; it reaches them once the relay is reachable)"
        }.`,
        { channel, entry: structured(e), sent },
      );
    }));
}
