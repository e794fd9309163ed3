/**
 * What every Skytale tool does around its work: run it under a deadline, turn
 * a thrown error into an `isError: true` result that says what to fix, tell
 * a client that asked how a long wait goes, and word short results.
 *
 * @module
 */
import { InterruptedError, SkytaleError } from "../../errors.ts";
import type { ErrorCode } from "../../errors.ts";
import { errorMessage, withTimeout } from "../../_util.ts";
import { logLine } from "../../runtime/env.ts";
import type { CallToolResult, McpServer } from "../_sdk.ts";
import type { ChannelManagerLike, ReceivedMessage } from "./_types.ts";
import { CHANNEL_HINT, type ToolName } from "./_names.ts";

/** How often a long wait tells a client that asked for progress how it goes. */
const PROGRESS_MS = 1000;

const HINTS: Partial<Record<ErrorCode, string>> = {
  invalid_argument: "Correct the argument and call again",
  invalid_channel: `Pass ${CHANNEL_HINT}`,
  invalid_hex: "Pass the hex string exactly as the other tool returned it, without other text",
  invalid_message:
    "Check you passed the right hex: a key package (from skytale_key_package) to skytale_add_member, a Welcome (from skytale_add_member) to skytale_join_channel",
  unknown_channel:
    "Call skytale_channels to see this agent's channels; create one with skytale_create_channel or join with skytale_join_channel / skytale_join_with_token first",
  wrong_relay:
    "This agent uses another relay than the channel's members: give it the same SKYTALE_RELAY as them (for the embedded local relay: the same SKYTALE_HOME and SKYTALE_LOCAL_PORT), restart this MCP server and call the tool again; skytale_channels does not help here",
  channel_exists:
    "Pick another name, or keep using the existing channel (skytale_channels lists this agent's channels)",
  welcome_mismatch:
    "That Welcome was made for another agent's key package: call skytale_key_package here, have a member pass it to skytale_add_member, and join with the new Welcome",
  unknown_member: "Call skytale_members to see who is in the channel",
  too_large: "Send a shorter message, or split it into several",
  stale_epoch: "The channel changed at the same moment; call the tool again",
  protocol: "Call the tool again; if it keeps failing, check the relay's logs",
  relay_unavailable:
    "The relay could not be reached: check SKYTALE_RELAY (unset uses the local relay) and the network, then call the tool again",
  relay_error: "Call the tool again; if it keeps failing, check the relay's logs",
  auth:
    "Check SKYTALE_API_KEY (an sk_live_… key for this relay and this channel's org) and restart the server",
  limit: "A relay limit was hit: wait a little, send less, then call the tool again",
  timeout:
    "Call the tool again; if it keeps timing out, check that the relay is reachable (SKYTALE_RELAY)",
  state_corrupt:
    "The stored state under SKYTALE_DATA_DIR is damaged; restore it from a backup or use a fresh data directory",
  closed: "The server is shutting down; restart it and call the tool again",
  aborted: "The call was cancelled; call the tool again to keep waiting",
};

/**
 * Turns an error thrown by a manager call into an `isError: true` result.
 *
 * @param tool The tool that failed.
 * @param error What was thrown.
 * @returns A result whose text says what went wrong and what to do.
 */
export function errorResult(tool: string, error: unknown): CallToolResult {
  if (error instanceof SkytaleError) {
    const hint = HINTS[error.code];
    const text = `${error.message}.${hint ? ` ${hint}.` : ""} (error code: ${error.code})`;
    return { content: [{ type: "text", text }], isError: true };
  }
  logLine(
    `skytale mcp: ${tool} failed: ${
      error instanceof Error ? error.stack ?? error.message : String(error)
    }`,
  );
  return {
    content: [{
      type: "text",
      text: `${tool} failed unexpectedly: ${
        errorMessage(error)
      }. This is a bug in the Skytale MCP server, not in your call; try again, and report it if it persists`,
    }],
    isError: true,
  };
}

/**
 * A text result, with its structured form when given.
 *
 * @param t The text a model reads.
 * @param structured The same as data.
 * @returns The result.
 */
export function text(t: string, structured?: Record<string, unknown>): CallToolResult {
  const r: CallToolResult = { content: [{ type: "text", text: t }] };
  if (structured) r.structuredContent = structured;
  return r;
}

/**
 * Runs a tool's work under a deadline (the tool's default unless `seconds`
 * is given) and maps what it throws to an error result. The work itself is
 * not cancelled by the deadline.
 */
export type ToolRun = (
  tool: string,
  body: () => Promise<CallToolResult>,
  seconds?: number,
) => Promise<CallToolResult>;

/**
 * The {@linkcode ToolRun} of a server whose tools may take `limit` seconds.
 *
 * @param limit The default deadline, in seconds.
 * @returns The runner.
 */
export function toolRunner(limit: number): ToolRun {
  return async (tool, body, seconds = limit) => {
    try {
      return await withTimeout(
        body(),
        seconds * 1000,
        () => new InterruptedError("timeout", `Timed out after ${seconds} s running ${tool}`),
      );
    } catch (e) {
      return errorResult(tool, e);
    }
  };
}

/** What a tool family registers its tools with. */
export interface ToolKit {
  /** The server to add the tools to. */
  server: McpServer;
  /** The channel manager the tools call. */
  manager: ChannelManagerLike;
  /** Runs a handler under the tools' deadline, mapping errors to results. */
  run: ToolRun;
  /** How much longer than its `timeout` argument a wait may take, in seconds. */
  grace: number;
}

/** Registers one tool on a kit's server. */
export type RegisterTool = (kit: ToolKit) => void;

/** The registrations of a family of tools, by tool name. */
export type ToolFamily = Partial<Record<ToolName, RegisterTool>>;

/**
 * A received message as tools and resources return it.
 *
 * @param m The message.
 * @returns Its fields, snake_case.
 */
export function messageJson(m: ReceivedMessage): Record<string, unknown> {
  return { sender: m.sender, sender_id: m.senderId, seq: m.seq, time: m.time, text: m.text };
}

/** The part of the SDK's request handler `extra` that long waits use. */
export interface WaitExtra {
  /** Aborted when the client cancels the request. */
  signal: AbortSignal;
  /** The request's `_meta`, with the client's progress token if it wants progress. */
  _meta?: { progressToken?: string | number | undefined } | undefined;
  /** Sends a notification tied to the request. */
  sendNotification(n: {
    method: "notifications/progress";
    params: { progressToken: string | number; progress: number; total: number; message: string };
  }): Promise<void>;
}

/**
 * Runs a wait of `seconds`, sending progress notifications every PROGRESS_MS
 * meanwhile if the client asked for them (a `progressToken`).
 *
 * @param extra The request's `extra`.
 * @param seconds How long the wait may take.
 * @param what What is waited for, for the progress message.
 * @param wait The wait.
 * @returns What the wait resolves with.
 */
export async function withProgress<T>(
  extra: WaitExtra,
  seconds: number,
  what: string,
  wait: () => Promise<T>,
): Promise<T> {
  const token = extra._meta?.progressToken;
  if (token === undefined || seconds <= 0) return await wait();
  const start = Date.now();
  const timer = setInterval(() => {
    const elapsed = Math.min(seconds, (Date.now() - start) / 1000);
    extra.sendNotification({
      method: "notifications/progress",
      params: {
        progressToken: token,
        progress: Math.round(elapsed * 10) / 10,
        total: seconds,
        message: `Waiting for ${what} (${Math.round(elapsed)} of ${seconds} s)`,
      },
    }).catch(() => {});
  }, PROGRESS_MS);
  try {
    return await wait();
  } finally {
    clearInterval(timer);
  }
}

/**
 * A list for a sentence.
 *
 * @param items The items.
 * @returns Them comma-separated, or "(none)".
 */
export function list(items: string[]): string {
  return items.length === 0 ? "(none)" : items.join(", ");
}

/**
 * A count with its noun.
 *
 * @param n The count.
 * @param one The noun's singular.
 * @param many Its plural (default: `one` + "s").
 * @returns E.g. "1 message", "2 messages".
 */
export function plural(n: number, one: string, many = one + "s"): string {
  return `${n} ${n === 1 ? one : many}`;
}
