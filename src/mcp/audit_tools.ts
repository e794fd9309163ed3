/**
 * The MCP tool `skytale_audit`: a member reads its channel's audit log back
 * from the relay, verified (`src/audit/`). Registered next to the channel
 * tools when the manager has `auditReport(channel)`.
 *
 * @module
 */
import { z } from "zod";
import { InterruptedError } from "../errors.ts";
import type { AuditReport } from "../audit/chain.ts";
import type { CallToolResult, McpServer } from "./_sdk.ts";
import { errorResult } from "./tools.ts";

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

const CHANNEL = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;

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
  const limit = options.toolTimeoutSeconds ?? 60;
  server.registerTool(AUDIT_TOOL, {
    title: "Read the verified audit log",
    description:
      "Read a channel's encrypted audit log back from the relay and verify it: who joined, was added or removed, key rotations, and each message's sender, time, size and SHA-256. " +
      "Says whether every member's hash chain is intact (or the position of the first missing, reordered or altered entry), then lists the most recent entries. " +
      "Needs an agent started with auditing on (SKYTALE_AUDIT=1).",
    inputSchema: {
      channel: z
        .string({ error: 'channel is required: pass a name "org/namespace/service"' })
        .regex(CHANNEL, {
          error: 'channel must be "org/namespace/service", e.g. "acme/research/results"',
        })
        .describe('The channel, "org/namespace/service"'),
      limit: z.number().int().min(1).max(500).default(20).describe(
        "How many of the most recent entries to list (default 20)",
      ),
    },
    annotations: { readOnlyHint: true, openWorldHint: true },
  }, async ({ channel, limit: n }): Promise<CallToolResult> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const report = await Promise.race([
        manager.auditReport(channel),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new InterruptedError("timeout", `Timed out after ${limit} s running ${AUDIT_TOOL}`),
              ),
            limit * 1000,
          );
        }),
      ]);
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
    } catch (e) {
      return errorResult(AUDIT_TOOL, e);
    } finally {
      clearTimeout(timer);
    }
  });
}
