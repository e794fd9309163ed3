/**
 * The MCP tool `skytale_audit`: a member reads its channel's audit log back
 * from the relay, verified (`src/audit/`). Registered next to the channel
 * tools when the manager has `auditReport(channel)`.
 *
 * @module
 */
import { z } from "zod";
import type { AuditReport } from "../audit/chain.ts";
import type { CallToolResult, McpServer } from "./_sdk.ts";
import { shortChannelArg } from "./tools/_args.ts";
import { toolRunner } from "./tools/_result.ts";

/** The name of the audit tool. */
export const AUDIT_TOOL = "skytale_audit";

/** A manager that keeps audit logs. */
export interface AuditManagerLike {
  /** Reads a channel's audit log back from the relay and verifies it. */
  auditReport(channel: string): Promise<AuditReport>;
}

/**
 * Whether a manager keeps audit logs.
 *
 * @param m The manager.
 * @returns True if it has `auditReport(channel)`.
 */
export function hasAudit(m: unknown): m is AuditManagerLike {
  return typeof (m as AuditManagerLike).auditReport === "function";
}

/**
 * Registers `skytale_audit` on an MCP server.
 *
 * @example
 * ```ts ignore
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * const server = new McpServer({ name: "skytale", version: "0.1.0" });
 * registerAuditTools(server, new SkytaleChannelManager({ identity: "alice", audit: true }));
 * ```
 *
 * @param server The server.
 * @param manager The manager whose audit logs the tool reads.
 * @param options `toolTimeoutSeconds` (default 60).
 */
export function registerAuditTools(
  server: McpServer,
  manager: AuditManagerLike,
  options: { toolTimeoutSeconds?: number } = {},
): void {
  const run = toolRunner(options.toolTimeoutSeconds ?? 60);
  server.registerTool(
    AUDIT_TOOL,
    {
      title: "Read the verified audit log",
      description:
        "Read a channel's encrypted audit log back from the relay and verify it: who joined, was added or removed, key rotations, and each message's sender, time, size and SHA-256. " +
        "Says whether every member's hash chain is intact (or the position of the first missing, reordered or altered entry), then lists the most recent entries. " +
        "Needs an agent started with auditing on (SKYTALE_AUDIT=1).",
      inputSchema: {
        channel: shortChannelArg,
        limit: z.number().int().min(1).max(500).default(20).describe(
          "How many of the most recent entries to list (default 20)",
        ),
      },
      annotations: { readOnlyHint: true, openWorldHint: true },
    },
    ({ channel, limit: n }) =>
      run(AUDIT_TOOL, async () => reportResult(channel, await manager.auditReport(channel), n)),
  );
}

/**
 * The tool's result for a verified (or not) audit log.
 *
 * @param channel The channel.
 * @param report The report.
 * @param n How many of the most recent entries to list.
 * @returns The verdict and the entries, as text and as data.
 */
function reportResult(channel: string, report: AuditReport, n: number): CallToolResult {
  const recent = report.entries.slice(-n);
  const head = report.ok
    ? `The audit log of "${channel}" verifies: ${report.entries.length} entries from ${
      Object.keys(report.heads).length
    } writer(s).`
    : `The audit log of "${channel}" does NOT verify. First bad entry at position ${report.firstBad}:\n` +
      report.problems.map((p) => `- position ${p.position}: ${p.reason}`).join("\n");
  const lines = recent.map((e) => {
    const ev = e.event;
    const detail = ev.type === "message"
      ? ` from ${ev.sender} [${ev.tag}] ${ev.size ?? "?"} bytes sha256 ${ev.sha256 ?? "?"}`
      : ev.type === "commit"
      ? (ev.rotation
        ? " key rotation"
        : ` added ${JSON.stringify(ev.added)} removed ${JSON.stringify(ev.removed)}`)
      : "";
    return `${e.position}. ${ev.time} epoch ${e.epoch}${
      ev.seq !== undefined ? ` seq ${ev.seq}` : ""
    } ${ev.type}${detail} (by ${e.writer} #${e.i})`;
  });
  return {
    content: [{ type: "text", text: [head, ...lines].join("\n") }],
    structuredContent: {
      channel,
      ok: report.ok,
      ...(report.firstBad !== undefined ? { first_bad: report.firstBad } : {}),
      problems: report.problems,
      total: report.entries.length,
      entries: recent.map((e) => ({
        position: e.position,
        writer: e.writer,
        i: e.i,
        epoch: e.epoch,
        ...e.event,
      })),
    },
  };
}
