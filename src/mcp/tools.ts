/**
 * The Skytale MCP tools: their names, input schemas, descriptions written for
 * a model, and handlers that call a channel manager and turn its answers into
 * short readable results. Every {@linkcode SkytaleError} becomes an
 * `isError: true` result that says what to fix; no tool waits past its deadline.
 *
 * @module
 */
import { z } from "zod";
import { InterruptedError, SkytaleError } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";
import { logLine } from "../runtime/env.ts";
import type { Member } from "../identity.ts";
import type { CallToolResult, McpServer } from "./_sdk.ts";

/** A message returned by {@linkcode ChannelManagerLike.receive}. */
export interface ReceivedMessage {
  /** The sender's identity (from its MLS credential). */
  sender: string;
  /** The sender's did, the key its name is bound to. */
  senderId: string;
  /** The relay's per-channel sequence number. */
  seq: number;
  /** When the relay stored it, ISO-8601. */
  time: string;
  /** The text. */
  text: string;
}

/** A channel as listed by {@linkcode ChannelManagerLike.channels}. */
export interface ChannelListing {
  /** The channel name. */
  channel: string;
  /** The MLS epoch. */
  epoch: number;
  /** Member identities. */
  members: string[];
  /** False once this identity was removed from the channel. */
  active?: boolean;
}

/**
 * The part of `SkytaleChannelManager` the MCP tools use. The tools call
 * nothing else, so any object with these methods can back a server.
 */
export interface ChannelManagerLike {
  /** This agent's identity. */
  readonly identity: string;
  /** Creates a channel with the caller as its first member. */
  create(channel: string, options?: { ciphersuite?: string }): Promise<void>;
  /** A fresh KeyPackage, hex. */
  keyPackage(options?: { ciphersuite?: string }): Promise<string>;
  /** Adds the owner of a KeyPackage; resolves with the Welcome, hex. */
  addMember(channel: string, keyPackageHex: string): Promise<string>;
  /** Joins a channel from a Welcome. */
  join(channel: string, welcomeHex: string): Promise<void>;
  /** Encrypts and sends a text. */
  send(channel: string, text: string): Promise<{ seq: number }>;
  /**
   * Messages buffered since the last call, waiting up to `timeout` seconds when
   * none; `afterSeq` and `peek` read without consuming, `max` caps the count.
   */
  receive(channel: string, options: ReceiveOptionsLike): Promise<ReceivedMessage[]>;
  /** Waits until one of `channels` has messages buffered; resolves with those that have. */
  wait(
    channels: string[],
    options: { timeout?: number; signal?: AbortSignal },
  ): Promise<string[]>;
  /** The channel's recent messages, handed out or not; consumes nothing. */
  history(
    channel: string,
    options?: { afterSeq?: number; max?: number },
  ): Promise<ReceivedMessage[]>;
  /** Consuming listener: each accepted message is handed to it once. */
  on(
    event: "message",
    listener: (message: ReceivedMessage, channel: string) => void,
    options?: {
      channel?: string | undefined;
      filter?: ((message: ReceivedMessage, channel: string) => boolean) | undefined;
    },
  ): () => void;
  /** Told of each burst of new messages, consuming nothing. */
  on(
    event: "arrival",
    listener: (channel: string, messages: ReceivedMessage[]) => void,
  ): () => void;
  /** Told when this identity joins, leaves or is removed from a channel. */
  on(
    event: "membership",
    listener: (change: { channel: string; change: "joined" | "left" | "removed" }) => void,
  ): () => void;
  /** The channels of this identity. */
  channels(): Promise<ChannelListing[]>;
  /** The members of a channel. */
  members(channel: string): Promise<string[]>;
  /** The members of a channel with their dids and fingerprints. */
  roster(channel: string): Promise<Member[]>;
  /** This agent's name, did and fingerprint. */
  whoami(): Promise<Member>;
  /** Removes a member. */
  removeMember(channel: string, identity: string): Promise<unknown>;
  /** Leaves a channel. */
  leave(channel: string): Promise<unknown>;
  /** An invite token `skt_inv_…` for a channel. */
  invite(channel: string, options?: { ttl?: number; uses?: number }): Promise<string>;
  /** Joins a channel with an invite token. */
  joinWithToken(channel: string, token: string): Promise<void>;
}

/** The options {@linkcode ChannelManagerLike.receive} takes. */
export interface ReceiveOptionsLike {
  /** Seconds to wait for a first message when none is there. */
  timeout?: number | undefined;
  /** Gives the wait up. */
  signal?: AbortSignal | undefined;
  /** Read messages after this seq without consuming. */
  afterSeq?: number | undefined;
  /** Return what is buffered without consuming it. */
  peek?: boolean | undefined;
  /** The most messages to return. */
  max?: number | undefined;
}

/** Options of {@linkcode registerSkytaleTools}. */
export interface ToolOptions {
  /** The longest any tool other than `skytale_receive` may take, in seconds (default 60). */
  toolTimeoutSeconds?: number;
  /** How much longer than its `timeout` argument `skytale_receive` may take, in seconds (default 5). */
  receiveGraceSeconds?: number;
}

/** The names of the tools, as registered. */
export const ToolNames = {
  createChannel: "skytale_create_channel",
  keyPackage: "skytale_key_package",
  addMember: "skytale_add_member",
  joinChannel: "skytale_join_channel",
  send: "skytale_send",
  receive: "skytale_receive",
  channels: "skytale_channels",
  invite: "skytale_invite",
  joinWithToken: "skytale_join_with_token",
  members: "skytale_members",
  removeMember: "skytale_remove_member",
  leave: "skytale_leave",
  whoami: "skytale_whoami",
  wait: "skytale_wait",
} as const;

/** The name of one tool. */
export type ToolName = typeof ToolNames[keyof typeof ToolNames];

/** The longest `timeout` `skytale_receive` accepts, in seconds. */
export const MAX_RECEIVE_TIMEOUT = 50;

const CHANNEL_PATTERN = /^[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+$/;
const HEX_PATTERN = /^\s*[0-9a-fA-F]+\s*$/;
/** How often a long wait tells a client that asked for progress how it goes. */
const PROGRESS_MS = 1000;
const CHANNEL_HINT = 'a name of the form "org/namespace/service", e.g. "acme/research/results"';

const channelArg = z
  .string({ error: `channel is required: pass ${CHANNEL_HINT}` })
  .max(255, { error: "channel is too long: use at most 255 characters" })
  .regex(CHANNEL_PATTERN, {
    error:
      `channel must be ${CHANNEL_HINT} (three non-empty parts of letters, digits, ".", "_" or "-")`,
  })
  .describe(`The channel, ${CHANNEL_HINT}`);

/** The post-quantum hybrid suite (X-Wing KEM, AES-256-GCM, SHA-512, Ed25519). */
const PQ_SUITE = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";

const ciphersuiteArg = z
  .string({ error: "ciphersuite must be a string naming an MLS ciphersuite" })
  .max(120, { error: "ciphersuite is too long to be a ciphersuite name" })
  .regex(/^MLS_[A-Za-z0-9_]+$/, {
    error: `ciphersuite must be an MLS ciphersuite name, e.g. "${PQ_SUITE}"`,
  })
  .optional()
  .describe(
    `The MLS ciphersuite (default: the server's, X25519/AES-128-GCM/Ed25519). "${PQ_SUITE}" is post-quantum.`,
  );

function hexArg(what: string, from: string) {
  return z
    .string({ error: `${what} is required: pass the hex string returned by ${from}` })
    .max(4_000_000, { error: `${what} is too long to be a valid hex ${what}` })
    .regex(HEX_PATTERN, {
      error: `${what} must be hex digits only (0-9, a-f), exactly as returned by ${from}`,
    });
}

const schemas = {
  channelOnly: { channel: channelArg },
  addMember: {
    channel: channelArg,
    key_package_hex: hexArg("key_package_hex", "skytale_key_package on the joining agent")
      .describe("The joining agent's KeyPackage, hex, as returned by its skytale_key_package"),
  },
  joinChannel: {
    channel: channelArg,
    welcome_hex: hexArg("welcome_hex", "skytale_add_member on a member of the channel")
      .describe("The Welcome, hex, as returned by skytale_add_member on a member's side"),
  },
  send: {
    channel: channelArg,
    message: z
      .string({ error: "message is required: pass the text to send" })
      .min(1, { error: "message is empty: pass the text to send" })
      .describe("The text to send to every member of the channel"),
  },
  receive: {
    channel: channelArg,
    timeout: z
      .number({ error: `timeout must be a number of seconds from 0 to ${MAX_RECEIVE_TIMEOUT}` })
      .min(0, { error: "timeout must not be negative: pass 0 to return at once" })
      .max(MAX_RECEIVE_TIMEOUT, {
        error: `timeout must be at most ${MAX_RECEIVE_TIMEOUT} seconds: call again to keep waiting`,
      })
      .default(5)
      .describe(
        "Seconds to wait for a message when none is buffered (default 5, 0 = don't wait); it returns as soon as one arrives",
      ),
    after_seq: z
      .number({ error: "after_seq must be a sequence number (an integer from 0)" })
      .int({ error: "after_seq must be a sequence number (an integer from 0)" })
      .min(0, { error: "after_seq must not be negative" })
      .optional()
      .describe(
        "Read the recent messages after this seq instead of the new ones, without consuming anything (pass the last seq you saw)",
      ),
    peek: z
      .boolean({ error: "peek must be true or false" })
      .optional()
      .describe("true: return the waiting messages but leave them for the next skytale_receive"),
    max: z
      .number({ error: "max must be a positive integer" })
      .int({ error: "max must be a positive integer" })
      .min(1, { error: "max must be at least 1" })
      .max(1000, { error: "max must be at most 1000" })
      .optional()
      .describe("Return at most this many messages; the rest stay waiting"),
  },
  wait: {
    channels: z
      .array(channelArg, { error: "channels is required: pass a list of channel names" })
      .min(1, { error: "channels is empty: pass at least one channel name" })
      .max(100, { error: "channels has too many entries: pass at most 100" })
      .describe('The channels to watch, each a name "org/namespace/service"'),
    timeout: z
      .number({ error: `timeout must be a number of seconds from 0 to ${MAX_RECEIVE_TIMEOUT}` })
      .min(0, { error: "timeout must not be negative: pass 0 to return at once" })
      .max(MAX_RECEIVE_TIMEOUT, {
        error: `timeout must be at most ${MAX_RECEIVE_TIMEOUT} seconds: call again to keep waiting`,
      })
      .default(5)
      .describe("Seconds to wait for news on any of them (default 5)"),
  },
  joinWithToken: {
    channel: channelArg,
    token: z
      .string({ error: 'token is required: pass the "skt_inv_…" token from skytale_invite' })
      .startsWith("skt_inv_", {
        error:
          'token must be an invite token starting with "skt_inv_", as returned by skytale_invite',
      })
      .describe('The invite token "skt_inv_…" returned by skytale_invite on a member\'s side'),
  },
  removeMember: {
    channel: channelArg,
    identity: z
      .string({ error: "identity is required: pass a member's identity (see skytale_members)" })
      .min(1, { error: "identity is empty: pass a member's identity (see skytale_members)" })
      .describe("The identity of the member to remove, as listed by skytale_members"),
  },
} as const;

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
  const message = error instanceof Error ? error.message : String(error);
  return {
    content: [{
      type: "text",
      text:
        `${tool} failed unexpectedly: ${message}. This is a bug in the Skytale MCP server, not in your call; try again, and report it if it persists`,
    }],
    isError: true,
  };
}

function text(t: string, structured?: Record<string, unknown>): CallToolResult {
  const r: CallToolResult = { content: [{ type: "text", text: t }] };
  if (structured) r.structuredContent = structured;
  return r;
}

/**
 * Resolves with `work`, or rejects with a `timeout` {@linkcode SkytaleError}
 * after `seconds`. The work itself is not cancelled.
 */
function deadline<T>(work: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new InterruptedError("timeout", `Timed out after ${seconds} s ${what}`)),
      seconds * 1000,
    );
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** The part of the SDK's request handler `extra` that long waits use. */
interface _WaitExtra {
  signal: AbortSignal;
  _meta?: { progressToken?: string | number | undefined } | undefined;
  sendNotification(n: {
    method: "notifications/progress";
    params: { progressToken: string | number; progress: number; total: number; message: string };
  }): Promise<void>;
}

/**
 * Sends progress notifications every PROGRESS_MS while a wait of `seconds`
 * runs, if the client asked for them (a `progressToken`).
 *
 * @returns A function that stops them.
 */
function progress(extra: _WaitExtra, seconds: number, what: string): () => void {
  const token = extra._meta?.progressToken;
  if (token === undefined || seconds <= 0) return () => {};
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
  return () => clearInterval(timer);
}

function list(items: string[]): string {
  return items.length === 0 ? "(none)" : items.join(", ");
}

function plural(n: number, one: string, many = one + "s"): string {
  return `${n} ${n === 1 ? one : many}`;
}

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
  const limit = options.toolTimeoutSeconds ?? 60;
  const grace = options.receiveGraceSeconds ?? 5;

  /** Runs a handler under the default deadline, mapping errors to results. */
  async function run(
    tool: ToolName,
    body: () => Promise<CallToolResult>,
    seconds = limit,
  ): Promise<CallToolResult> {
    try {
      return await deadline(body(), seconds, `running ${tool}`);
    } catch (e) {
      return errorResult(tool, e);
    }
  }

  server.registerTool(ToolNames.createChannel, {
    title: "Create an encrypted channel",
    description:
      `Create a new end-to-end encrypted channel (an MLS group) with this agent (${manager.identity}) as its only member. ` +
      "Use it to start a private conversation between agents; then bring others in with skytale_invite (easiest: they join with the token) " +
      "or with skytale_add_member (needs their skytale_key_package). Fails if the channel already exists. " +
      `Optional ciphersuite: "${PQ_SUITE}" makes a post-quantum (X-Wing hybrid) channel; members then need key packages of that suite. ` +
      "Returns a confirmation.",
    inputSchema: { channel: channelArg, ciphersuite: ciphersuiteArg },
    annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
  }, ({ channel, ciphersuite }) =>
    run(ToolNames.createChannel, async () => {
      await manager.create(channel, ciphersuite ? { ciphersuite } : {});
      return text(
        `Created channel "${channel}"; ${manager.identity} is its only member. ` +
          "Invite others with skytale_invite, or add them with skytale_add_member using their key package.",
        { channel, members: [manager.identity] },
      );
    }));

  server.registerTool(ToolNames.keyPackage, {
    title: "Make a key package",
    description:
      `Create a fresh MLS key package for this agent (${manager.identity}): the public half of a one-time key that lets a channel member add you. ` +
      "Use it when you want to join a channel someone else runs: give the returned hex to a member, who passes it to skytale_add_member and gives you back a Welcome for skytale_join_channel. " +
      "The private half stays on this machine until used. For a post-quantum channel pass its ciphersuite. Returns the key package as hex.",
    inputSchema: { ciphersuite: ciphersuiteArg },
    annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
  }, ({ ciphersuite }) =>
    run(ToolNames.keyPackage, async () => {
      const hex = await manager.keyPackage(ciphersuite ? { ciphersuite } : {});
      return text(
        `Key package for ${manager.identity} (give it to a member of the channel for skytale_add_member):\n${hex}`,
        { identity: manager.identity, key_package_hex: hex },
      );
    }));

  server.registerTool(ToolNames.addMember, {
    title: "Add a member",
    description:
      "Add another agent to a channel you are a member of, using the key package that agent made with skytale_key_package. " +
      "Returns a Welcome (hex) that you must give to that agent: it joins by calling skytale_join_channel with the same channel and the Welcome. " +
      "Every current member sees the new member from then on; the new member cannot read earlier messages.",
    inputSchema: schemas.addMember,
    annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
  }, ({ channel, key_package_hex }) =>
    run(ToolNames.addMember, async () => {
      const before = await manager.members(channel).catch(() => undefined);
      const welcome = await manager.addMember(channel, key_package_hex.trim());
      const after = await manager.members(channel).catch(() => undefined);
      const added = before && after ? after.filter((m) => !before.includes(m)) : [];
      const who = added.length > 0 ? `"${added.join('", "')}"` : "the new member";
      return text(
        `Added ${who} to "${channel}". Give them this Welcome; they join with skytale_join_channel(channel="${channel}", welcome_hex=<this hex>):\n${welcome}`,
        { channel, added, welcome_hex: welcome },
      );
    }));

  server.registerTool(ToolNames.joinChannel, {
    title: "Join from a Welcome",
    description:
      "Join a channel using the Welcome (hex) a member made for your key package with skytale_add_member. " +
      "Use the same channel name the member used. After joining, read with skytale_receive and write with skytale_send. " +
      "Returns the channel's members.",
    inputSchema: schemas.joinChannel,
    annotations: { destructiveHint: false, openWorldHint: true },
  }, ({ channel, welcome_hex }) =>
    run(ToolNames.joinChannel, async () => {
      await manager.join(channel, welcome_hex.trim());
      const members = await manager.members(channel);
      return text(
        `Joined "${channel}" as ${manager.identity}. Members: ${list(members)}. ` +
          "Read with skytale_receive, write with skytale_send.",
        { channel, members },
      );
    }));

  server.registerTool(ToolNames.send, {
    title: "Send a message",
    description:
      "Encrypt a text message and send it to every member of a channel. Only members can read it; the relay sees ciphertext only. " +
      "Returns the message's sequence number in the channel.",
    inputSchema: schemas.send,
    annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
  }, ({ channel, message }) =>
    run(ToolNames.send, async () => {
      const { seq } = await manager.send(channel, message);
      return text(`Sent to "${channel}" (seq ${seq}).`, { channel, seq });
    }));

  server.registerTool(ToolNames.receive, {
    title: "Receive messages",
    description:
      "Return the messages other members sent to a channel since your last skytale_receive on it (each once, oldest first), with sender, time and text. " +
      `If none are waiting, waits up to timeout seconds (default 5, at most ${MAX_RECEIVE_TIMEOUT}) and returns as soon as one arrives. ` +
      "Optional: peek=true leaves the messages waiting; after_seq=N re-reads the recent messages after seq N without consuming; max caps how many. " +
      "Call it again to keep listening. The sender is proven by cryptography, not by the message text.",
    inputSchema: schemas.receive,
    annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: true },
  }, ({ channel, timeout, after_seq, peek, max }, extra) =>
    run(
      ToolNames.receive,
      async () => {
        const stop = progress(extra, timeout, `messages on "${channel}"`);
        let messages: ReceivedMessage[];
        try {
          messages = await manager.receive(channel, {
            timeout,
            signal: extra.signal,
            ...(after_seq !== undefined ? { afterSeq: after_seq } : {}),
            ...(peek ? { peek } : {}),
            ...(max !== undefined ? { max } : {}),
          });
        } finally {
          stop();
        }
        const kept = after_seq !== undefined || peek === true;
        const structured = {
          channel,
          messages: messages.map((m) => ({
            sender: m.sender,
            sender_id: m.senderId,
            seq: m.seq,
            time: m.time,
            text: m.text,
          })),
        };
        if (messages.length === 0) {
          return text(
            `No new messages on "${channel}" (waited ${timeout} s). Call skytale_receive again to keep listening.`,
            structured,
          );
        }
        const lines = messages.map((m) => `[${m.time}] ${m.sender}: ${m.text}`);
        return text(
          `${plural(messages.length, "message")} on "${channel}"${
            kept ? " (left waiting: not consumed)" : ""
          }:\n${lines.join("\n")}`,
          structured,
        );
      },
      timeout + grace,
    ));

  server.registerTool(ToolNames.wait, {
    title: "Wait for news on several channels",
    description:
      "Wait until any of the listed channels has new messages, up to timeout seconds (default 5, " +
      `at most ${MAX_RECEIVE_TIMEOUT}); returns as soon as one has, naming which. Consumes nothing: ` +
      "then read them with skytale_receive on the named channel(s).",
    inputSchema: schemas.wait,
    annotations: { readOnlyHint: true, openWorldHint: true },
  }, ({ channels, timeout }, extra) =>
    run(
      ToolNames.wait,
      async () => {
        const stop = progress(extra, timeout, "news");
        let ready: string[];
        try {
          ready = await manager.wait(channels, { timeout, signal: extra.signal });
        } finally {
          stop();
        }
        if (ready.length === 0) {
          return text(
            `No news on ${
              list(channels.map((c) => `"${c}"`))
            } (waited ${timeout} s). Call skytale_wait again to keep waiting.`,
            { channels: [] },
          );
        }
        return text(
          `News on ${list(ready.map((c) => `"${c}"`))}: read with skytale_receive(channel=...).`,
          { channels: ready },
        );
      },
      timeout + grace,
    ));

  server.registerTool(ToolNames.channels, {
    title: "List channels",
    description:
      `List the channels this agent (${manager.identity}) belongs to, with their members and MLS epoch (it grows with each membership change). ` +
      "Use it to recall channel names or check who can read a channel.",
    annotations: { readOnlyHint: true, openWorldHint: false },
  }, () =>
    run(ToolNames.channels, async () => {
      const channels = await manager.channels();
      const structured = {
        identity: manager.identity,
        channels: channels.map((c) => ({
          channel: c.channel,
          epoch: c.epoch,
          members: c.members,
          active: c.active ?? true,
        })),
      };
      if (channels.length === 0) {
        return text(
          `${manager.identity} is in no channels yet. Create one with skytale_create_channel, or join one with skytale_join_with_token or skytale_join_channel.`,
          structured,
        );
      }
      const lines = channels.map((c) =>
        `- ${c.channel} (epoch ${c.epoch}; members: ${list(c.members)})${
          c.active === false ? " [removed: no longer a member]" : ""
        }`
      );
      return text(
        `${manager.identity} is in ${plural(channels.length, "channel")}:\n${lines.join("\n")}`,
        structured,
      );
    }));

  server.registerTool(ToolNames.invite, {
    title: "Invite to a channel",
    description:
      "Make an invite token (skt_inv_…) for a channel you are a member of. Give it to the agent that should join: it calls skytale_join_with_token with the channel and the token, " +
      "and this server admits it automatically (no key package or Welcome to copy). This server must keep running until the other agent has joined. " +
      "The token expires and can be used a limited number of times. Returns the token.",
    inputSchema: schemas.channelOnly,
    annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
  }, ({ channel }) =>
    run(ToolNames.invite, async () => {
      const token = await manager.invite(channel);
      return text(
        `Invite token for "${channel}" (the other agent calls skytale_join_with_token(channel="${channel}", token=<this token>); keep this server running until it has joined):\n${token}`,
        { channel, token },
      );
    }));

  server.registerTool(ToolNames.joinWithToken, {
    title: "Join with an invite token",
    description:
      "Join a channel with an invite token (skt_inv_…) made by a member with skytale_invite. Waits until the inviting agent's server admits you. " +
      "Use the channel name that came with the token. Returns the channel's members.",
    inputSchema: schemas.joinWithToken,
    annotations: { destructiveHint: false, openWorldHint: true },
  }, ({ channel, token }) =>
    run(ToolNames.joinWithToken, async () => {
      await manager.joinWithToken(channel, token.trim());
      const members = await manager.members(channel);
      return text(
        `Joined "${channel}" as ${manager.identity}. Members: ${list(members)}. ` +
          "Read with skytale_receive, write with skytale_send.",
        { channel, members },
      );
    }));

  server.registerTool(ToolNames.members, {
    title: "List members",
    description:
      "List the identities of the members of a channel you belong to: exactly the agents that can read what is sent there.",
    inputSchema: schemas.channelOnly,
    annotations: { readOnlyHint: true, openWorldHint: false },
  }, ({ channel }) =>
    run(ToolNames.members, async () => {
      const roster = await manager.roster(channel);
      const lines = roster.map((m) => `- ${m.name} (${m.did}, fingerprint ${m.fingerprint})`);
      return text(
        `${plural(roster.length, "member")} of "${channel}":\n${lines.join("\n")}`,
        { channel, members: roster.map((m) => m.name), roster },
      );
    }));

  server.registerTool(ToolNames.whoami, {
    title: "Who am I",
    description:
      "Return this agent's name, its stable id (a did:key: the identity key other members see as sender_id) and a short fingerprint. " +
      "Read the fingerprint to a human or another agent over a separate path to confirm they are talking to this agent.",
    annotations: { readOnlyHint: true, openWorldHint: false },
  }, () =>
    run(ToolNames.whoami, async () => {
      const me = await manager.whoami();
      return text(
        `You are "${me.name}", ${me.did} (fingerprint ${me.fingerprint}).`,
        { name: me.name, did: me.did, fingerprint: me.fingerprint },
      );
    }));

  server.registerTool(ToolNames.removeMember, {
    title: "Remove a member",
    description:
      "Remove a member from a channel. From the next message on, the removed agent can no longer read the channel (the group's keys change). " +
      "Use skytale_members to see the identities. Returns the remaining members.",
    inputSchema: schemas.removeMember,
    annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: true },
  }, ({ channel, identity }) =>
    run(ToolNames.removeMember, async () => {
      await manager.removeMember(channel, identity);
      const members = await manager.members(channel);
      return text(
        `Removed "${identity}" from "${channel}". Remaining members: ${list(members)}.`,
        { channel, removed: identity, members },
      );
    }));

  server.registerTool(ToolNames.leave, {
    title: "Leave a channel",
    description:
      "Leave a channel: this agent stops receiving its messages and the others are told it left. To come back, it needs a new invite or Welcome. " +
      "Returns a confirmation.",
    inputSchema: schemas.channelOnly,
    annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: true },
  }, ({ channel }) =>
    run(ToolNames.leave, async () => {
      await manager.leave(channel);
      return text(`${manager.identity} left "${channel}".`, { channel });
    }));
}
