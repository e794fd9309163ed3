/**
 * MCP over end-to-end encrypted channels. {@linkcode SkytaleTransport} is an
 * MCP SDK `Transport` for a client; {@linkcode serveChannel} answers many
 * remote clients on one channel, one MCP session per remote member.
 *
 * ## Wire format
 * Each JSON-RPC message travels as one MLS application message tagged `mcp`
 * (chat messages use tag `chat`; neither layer sees the other's traffic). The
 * body is a UTF-8 JSON frame:
 *
 * ```text
 * { "v": 1, "dir": "c" | "s", "sid": string, "to"?: string, "msg"?: JSON-RPC, "bye"?: string }
 * ```
 *
 * `dir` is `c` from a client to a server and `s` back. `sid` is the client
 * transport's random session id. `to` names the recipient's identity: a
 * server's replies always carry the client's identity, so clients sharing a
 * channel ignore each other's traffic; a client that was not told its
 * server's identity sends without `to` until the first reply, then locks on
 * to that server. `bye` ends the session (with a reason). The sender's
 * identity is never read from the frame: it is the MLS credential of the
 * sending member, so a session is keyed by (sender identity, `sid`).
 *
 * @module
 */
import { SkytaleError, ValidationError } from "../errors.ts";
import { fromUtf8, Tags, utf8 } from "../channel/envelope.ts";
import { logLine } from "../runtime/env.ts";

/** A JSON-RPC 2.0 message as MCP sends it: structurally the SDK's `JSONRPCMessage`. */
export interface JsonRpcMessage {
  /** Always `"2.0"`. */
  jsonrpc: "2.0";
  /** The request id (requests and responses). */
  id?: string | number | undefined;
  /** The method (requests and notifications). */
  method?: string | undefined;
  /** The parameters. */
  params?: unknown;
  /** The result (successful responses). */
  result?: unknown;
  /** The error (error responses). */
  error?: { code: number; message: string; data?: unknown } | undefined;
}

/** Per-send options, as the MCP SDK passes them (unused by this transport). */
export interface TransportSendOptions {
  /** The incoming request an outgoing message relates to. */
  relatedRequestId?: string | number | undefined;
}

/**
 * The MCP SDK `Transport` contract, as this module implements it. Every
 * transport here is assignable to the SDK's `Transport`.
 */
export interface McpTransport {
  /** Starts receiving; throws if called twice. */
  start(): Promise<void>;
  /**
   * Sends one JSON-RPC message.
   *
   * @param message The message.
   * @param options SDK send options (ignored).
   */
  send(message: JsonRpcMessage, options?: TransportSendOptions): Promise<void>;
  /** Closes; idempotent, fires `onclose` once. */
  close(): Promise<void>;
  /** Called once when the transport closes, for any reason. */
  onclose?: (() => void) | undefined;
  /** Called with errors that do not close the transport. */
  onerror?: ((error: Error) => void) | undefined;
  /** Called with every message received. */
  onmessage?: ((message: JsonRpcMessage) => void) | undefined;
  /** The session id. */
  sessionId?: string | undefined;
}

/** What the transport needs from a channel manager (`SkytaleChannelManager` fits). */
export interface TaggedChannels {
  /** This member's identity. */
  readonly identity: string;
  /**
   * Sends bytes under a tag.
   *
   * @param channel The channel.
   * @param tag The tag.
   * @param data The body.
   * @returns The relay's sequence number.
   */
  sendTagged(channel: string, tag: string, data: Uint8Array): Promise<{ seq: number }>;
  /**
   * Registers a handler for a tag.
   *
   * @param channel The channel.
   * @param tag The tag.
   * @param handler Called per message, in order, with the sender from its MLS credential.
   * @returns A function removing the handler.
   */
  onTagged(
    channel: string,
    tag: string,
    handler: (d: { sender: string; seq: number; data: Uint8Array }) => void,
  ): Promise<() => void>;
  /**
   * Lists the channel's members.
   *
   * @param channel The channel.
   * @returns Their identities.
   */
  members(channel: string): Promise<string[]>;
}

/** JSON-RPC error codes the bridge answers with (the MCP SDK's own values). */
export const BridgeErrorCodes = {
  /** The session ended: the server, its process or the relay went away. */
  connectionClosed: -32000,
  /** No answer in time. */
  requestTimeout: -32001,
  /** Anything else that kept a request from being forwarded. */
  internalError: -32603,
} as const;

/** A code of {@linkcode BridgeErrorCodes}. */
export type BridgeErrorCodes = typeof BridgeErrorCodes[keyof typeof BridgeErrorCodes];

/** One frame inside an `mcp`-tagged message (see the module doc). */
interface Frame {
  v: 1;
  dir: "c" | "s";
  sid: string;
  to?: string;
  msg?: JsonRpcMessage;
  bye?: string;
}

const FRAME_VERSION = 1;
const BYE_WAIT_MS = 2000;

function encodeFrame(f: Frame): Uint8Array {
  return utf8(JSON.stringify(f));
}

function decodeFrame(data: Uint8Array): Frame | undefined {
  let f: unknown;
  try {
    f = JSON.parse(fromUtf8(data));
  } catch {
    return undefined;
  }
  if (typeof f !== "object" || f === null) return undefined;
  const o = f as Record<string, unknown>;
  if (o.v !== FRAME_VERSION || (o.dir !== "c" && o.dir !== "s") || typeof o.sid !== "string") {
    return undefined;
  }
  if (o.to !== undefined && typeof o.to !== "string") return undefined;
  if (o.bye !== undefined && typeof o.bye !== "string") return undefined;
  if (o.msg !== undefined) {
    const m = o.msg as Record<string, unknown> | null;
    if (typeof m !== "object" || m === null || m.jsonrpc !== "2.0") return undefined;
  } else if (o.bye === undefined) return undefined;
  return o as unknown as Frame;
}

function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Resolves after `ms`, or when `p` settles, whichever is first; never rejects. */
function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(() => {}, () => {}),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]).finally(() => clearTimeout(timer));
}

/** Options of {@linkcode SkytaleTransport}. */
export interface SkytaleTransportOptions {
  /**
   * The identity of the member serving MCP on the channel. Left out, the
   * first messages go to any server and the transport locks on to the first
   * one that answers; give it when a channel has more than one server.
   */
  server?: string;
  /**
   * Resume this session id (default: a new random one). An SDK `Client` skips
   * `initialize` on a transport that has a session id.
   */
  sessionId?: string;
  /** How long {@linkcode SkytaleTransport.read} waits by default, in seconds (default 30). */
  readTimeout?: number;
}

/**
 * The MCP SDK `Transport` for a client over an end-to-end encrypted channel:
 * JSON-RPC messages are MLS application messages tagged `mcp`, addressed to
 * the member serving MCP there (see {@linkcode serveChannel}).
 *
 * Pass it to an SDK `Client`'s `connect`, or use `write`/`read` directly.
 *
 * @example
 * ```ts ignore
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * import { SkytaleTransport } from "@skytale/mcp/transport";
 * const mgr = new SkytaleChannelManager({ identity: "mcp-agent" });
 * await mgr.joinWithToken("org/ns/mcp-rpc", "skt_inv_…");
 * const transport = new SkytaleTransport(mgr, "org/ns/mcp-rpc");
 * await transport.write({ jsonrpc: "2.0", method: "tools/list", id: 1 });
 * const response = await transport.read();
 * await transport.close();
 * ```
 */
export class SkytaleTransport implements McpTransport {
  /** The channel carrying the session. */
  readonly channel: string;
  /**
   * The session id: undefined until the server first answers (so an SDK
   * `Client` initializes a fresh session), or the one given in the options
   * (the SDK then treats `connect` as resuming that session).
   */
  sessionId: string | undefined;
  /** Called once when the transport closes (by `close()`, or the server ending the session). */
  onclose?: (() => void) | undefined;
  /** Called with errors that do not close the transport (e.g. a failed send). */
  onerror?: ((error: Error) => void) | undefined;
  /** Called with each message from the server; without it, messages queue for `read()`. */
  onmessage?: ((message: JsonRpcMessage) => void) | undefined;
  #mgr: TaggedChannels;
  #sid: string;
  #server: string | undefined;
  #readTimeout: number;
  #startCalled = false;
  #tap: Promise<void> | undefined;
  #untap: (() => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #queue: JsonRpcMessage[] = [];
  #readers: { resolve: (m: JsonRpcMessage) => void; reject: (e: Error) => void }[] = [];
  #sending: Promise<unknown> = Promise.resolve();
  #endReason: string | undefined;

  /**
   * Creates a client transport for a channel (nothing is sent before `start`, `send` or `write`).
   *
   * @param manager The channel manager (`SkytaleChannelManager`), already a member of `channel`.
   * @param channel The channel on which the server is served.
   * @param options The server's identity, a fixed session id, the read timeout.
   */
  constructor(manager: TaggedChannels, channel: string, options: SkytaleTransportOptions = {}) {
    this.#mgr = manager;
    this.channel = channel;
    this.#server = options.server;
    this.sessionId = options.sessionId;
    this.#sid = options.sessionId ?? crypto.randomUUID();
    this.#readTimeout = options.readTimeout ?? 30;
  }

  /** Why the session ended (e.g. the server ended it), once closed. */
  get closeReason(): string | undefined {
    return this.#closed ? (this.#endReason ?? "closed") : undefined;
  }

  /** The identity of the server this session talks to, once known. */
  get server(): string | undefined {
    return this.#server;
  }

  /**
   * Starts receiving. The SDK's `connect` calls it; `write`/`read` start implicitly.
   *
   * @returns When subscribed to the channel.
   * @throws {SkytaleError} `invalid_argument` if already started, `closed` after close.
   */
  async start(): Promise<void> {
    if (this.#startCalled) {
      throw new SkytaleError(
        "invalid_argument",
        `SkytaleTransport on "${this.channel}" is already started`,
      );
    }
    this.#startCalled = true;
    await this.#ensureTap();
  }

  #ensureTap(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#tap ??= this.#mgr.onTagged(this.channel, Tags.mcp, (d) => this.#onData(d))
      .then((untap) => {
        if (this.#closed) untap();
        else this.#untap = untap;
      });
    return this.#tap;
  }

  #closedError(): SkytaleError {
    return new SkytaleError(
      "closed",
      `MCP session on "${this.channel}" is closed${this.#endReason ? `: ${this.#endReason}` : ""}`,
    );
  }

  #onData(d: { sender: string; data: Uint8Array }): void {
    const f = decodeFrame(d.data);
    if (!f || f.dir !== "s" || f.sid !== this.#sid || f.to !== this.#mgr.identity) return;
    if (this.#server !== undefined && d.sender !== this.#server) return;
    this.#server ??= d.sender;
    this.sessionId ??= this.#sid;
    if (f.msg) this.#deliver(f.msg);
    if (f.bye !== undefined) {
      this.#endReason = `server "${d.sender}" ended the session (${f.bye})`;
      void this.#close(false);
    }
  }

  #deliver(m: JsonRpcMessage): void {
    const reader = this.#readers.shift();
    if (reader) reader.resolve(m);
    else if (this.onmessage) {
      try {
        this.onmessage(m);
      } catch (e) {
        this.onerror?.(errorOf(e));
      }
    } else this.#queue.push(m);
  }

  /**
   * Sends a JSON-RPC message to the server. Messages leave in call order; the
   * promise resolves once the relay has stored the encrypted message.
   *
   * @param message The message.
   * @param _options SDK send options (ignored).
   * @returns When the relay acknowledged it.
   * @throws {SkytaleError} `closed`, `too_large`, or a relay error.
   */
  async send(message: JsonRpcMessage, _options?: TransportSendOptions): Promise<void> {
    if (this.#closed) throw this.#closedError();
    await this.#ensureTap();
    const frame: Frame = { v: FRAME_VERSION, dir: "c", sid: this.#sid, msg: message };
    if (this.#server !== undefined) frame.to = this.#server;
    await this.#enqueue(frame);
  }

  #enqueue(frame: Frame): Promise<void> {
    const body = encodeFrame(frame);
    const p = this.#sending.then(() => this.#mgr.sendTagged(this.channel, Tags.mcp, body));
    this.#sending = p.catch(() => {});
    return p.then(() => {});
  }

  /**
   * Sends a message (the same as {@linkcode send}).
   *
   * @param message The message.
   * @returns When the relay acknowledged it.
   */
  write(message: JsonRpcMessage): Promise<void> {
    return this.send(message);
  }

  /**
   * Returns the next message from the server, waiting for it (bounded). Only
   * messages not taken by `onmessage` queue up for it.
   *
   * @param options `timeout` in seconds (default: the transport's `readTimeout`).
   * @returns The message.
   * @throws {SkytaleError} `timeout`, or `closed` once the session ended.
   */
  async read(options: { timeout?: number } = {}): Promise<JsonRpcMessage> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    if (this.#closed) throw this.#closedError();
    await this.#ensureTap();
    const ms = (options.timeout ?? this.#readTimeout) * 1000;
    return await new Promise<JsonRpcMessage>((resolve, reject) => {
      const reader = {
        resolve: (m: JsonRpcMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.#readers.splice(this.#readers.indexOf(reader), 1);
        reject(
          new SkytaleError(
            "timeout",
            `No MCP message on "${this.channel}" within ${ms / 1000} s`,
          ),
        );
      }, ms);
      this.#readers.push(reader);
    });
  }

  /**
   * Ends the session: tells the server (best effort, bounded), stops
   * receiving and fires `onclose` once. Idempotent; the manager stays open.
   *
   * @returns When closed.
   */
  close(): Promise<void> {
    return this.#close(true);
  }

  #close(sayBye: boolean): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    // Deferred, so that an onclose handler calling close() again finds #closing set.
    this.#closing = Promise.resolve().then(async () => {
      if (sayBye && this.#tap) {
        const frame: Frame = { v: FRAME_VERSION, dir: "c", sid: this.#sid, bye: "closed" };
        if (this.#server !== undefined) frame.to = this.#server;
        await bounded(this.#enqueue(frame), BYE_WAIT_MS);
      }
      this.#untap?.();
      const err = this.#closedError();
      for (const r of this.#readers.splice(0)) r.reject(err);
      this.onclose?.();
    });
    return this.#closing;
  }
}

/** A remote client's session, as {@linkcode serveChannel} sees it. */
export interface ChannelSession {
  /** The channel. */
  channel: string;
  /** The client's identity, from its MLS credential. */
  identity: string;
  /** The client transport's session id. */
  sessionId: string;
}

/**
 * What {@linkcode serveChannel} needs from a server: an SDK `McpServer` (or
 * `Server`) fits, and so does anything that answers on a transport.
 */
export interface McpServerLike {
  /**
   * Attaches a transport and starts answering on it (calls its `start`).
   *
   * @param transport The session's transport.
   */
  connect(transport: McpTransport): Promise<void>;
  /** Stops answering and closes the transport. */
  close(): Promise<void>;
}

/** Options of {@linkcode serveChannel}. */
export interface ServeChannelOptions {
  /** The most sessions at once (default 64); requests of more get a JSON-RPC error. */
  maxSessions?: number;
  /** How often membership is checked to end the sessions of departed members, in ms (default 1000). */
  memberCheckMs?: number;
  /**
   * Called when a session starts or ends.
   *
   * @param event `start` or `end`, with the session and, for `end`, why.
   */
  onSession?: (event: { type: "start" | "end"; session: ChannelSession; reason?: string }) => void;
}

/** A channel being served by {@linkcode serveChannel}. */
export interface ChannelServing {
  /** The channel. */
  readonly channel: string;
  /**
   * The sessions open now.
   *
   * @returns One entry per remote client session.
   */
  sessions(): ChannelSession[];
  /** Ends every session (telling each client) and stops serving; idempotent. */
  close(): Promise<void>;
}

/** The transport of one remote client's session on the serving side. */
class SessionTransport implements McpTransport {
  sessionId: string;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JsonRpcMessage) => void) | undefined;
  readonly session: ChannelSession;
  #mgr: TaggedChannels;
  #started = false;
  #closing: Promise<void> | undefined;
  #queue: JsonRpcMessage[] = [];
  #sending: Promise<unknown> = Promise.resolve();
  #onEnd: (reason: string) => void;
  /** Set before closing when the client is not to be told (it said bye, or left). */
  silent = false;
  reason = "closed by the server";

  constructor(mgr: TaggedChannels, session: ChannelSession, onEnd: (reason: string) => void) {
    this.#mgr = mgr;
    this.session = session;
    this.sessionId = session.sessionId;
    this.#onEnd = onEnd;
  }

  start(): Promise<void> {
    if (this.#started) {
      return Promise.reject(
        new SkytaleError(
          "invalid_argument",
          `Session "${this.sessionId}" of "${this.session.identity}" is already started`,
        ),
      );
    }
    this.#started = true;
    for (const m of this.#queue.splice(0)) this.deliver(m);
    return Promise.resolve();
  }

  deliver(m: JsonRpcMessage): void {
    if (this.#closing) return;
    if (!this.#started || !this.onmessage) {
      this.#queue.push(m);
      return;
    }
    try {
      this.onmessage(m);
    } catch (e) {
      this.onerror?.(errorOf(e));
    }
  }

  async send(message: JsonRpcMessage, _options?: TransportSendOptions): Promise<void> {
    if (this.#closing) {
      throw new SkytaleError(
        "closed",
        `Session "${this.sessionId}" of "${this.session.identity}" is closed`,
      );
    }
    try {
      await this.#frame({ msg: message });
    } catch (e) {
      if (
        e instanceof ValidationError && e.code === "too_large" && message.id !== undefined &&
        message.method === undefined
      ) {
        // A response that does not fit a message: answer the request with an error instead.
        await this.#frame({
          msg: {
            jsonrpc: "2.0",
            id: message.id,
            error: { code: BridgeErrorCodes.internalError, message: e.message },
          },
        });
        return;
      }
      throw e;
    }
  }

  #frame(part: { msg?: JsonRpcMessage; bye?: string }): Promise<void> {
    const f: Frame = {
      v: FRAME_VERSION,
      dir: "s",
      sid: this.sessionId,
      to: this.session.identity,
      ...part,
    };
    const body = encodeFrame(f);
    const ch = this.session.channel;
    const p = this.#sending.then(() => this.#mgr.sendTagged(ch, Tags.mcp, body));
    this.#sending = p.catch(() => {});
    return p.then(() => {});
  }

  close(): Promise<void> {
    this.#closing ??= Promise.resolve().then(async () => {
      this.#onEnd(this.reason);
      if (!this.silent) await bounded(this.#frame({ bye: this.reason }), BYE_WAIT_MS);
      this.onclose?.();
    });
    return this.#closing;
  }
}

interface Served {
  transport: SessionTransport;
  server: Promise<McpServerLike | undefined>;
}

/**
 * Serves MCP on a channel: every remote member (keyed by its identity from
 * the MLS credential, and its client's session id) gets its own session, with
 * a server made by `factory`, so one factory answers them all without request
 * id clashes. A session ends when its client closes, when its member leaves
 * or is removed from the channel, or when its server closes.
 *
 * @example
 * ```ts ignore
 * import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
 * import { SkytaleChannelManager } from "@skytale/mcp";
 * import { serveChannel } from "@skytale/mcp/transport";
 * const mgr = new SkytaleChannelManager({ identity: "tools" });
 * await mgr.create("org/ns/mcp-rpc");
 * const serving = await serveChannel(mgr, "org/ns/mcp-rpc", () => {
 *   const server = new McpServer({ name: "tools", version: "1.0.0" });
 *   // server.registerTool(…)
 *   return server;
 * });
 * ```
 *
 * @param manager The channel manager, a member of `channel`.
 * @param channel The channel to serve.
 * @param factory Makes the server of one session (called once per session).
 * @param options Session limit, membership check interval, session events.
 * @returns The running service.
 */
export async function serveChannel(
  manager: TaggedChannels,
  channel: string,
  factory: (session: ChannelSession) => McpServerLike | Promise<McpServerLike>,
  options: ServeChannelOptions = {},
): Promise<ChannelServing> {
  const sessions = new Map<string, Served>();
  /** Sessions that ended: a late request on one is refused, not served by a fresh server. */
  const ended = new Set<string>();
  const max = options.maxSessions ?? 64;
  let closed = false;
  const keyOf = (identity: string, sid: string) => `${identity}\n${sid}`;

  const end = (s: Served, reason: string, silent: boolean): Promise<void> => {
    s.transport.silent ||= silent;
    s.transport.reason = reason;
    return (async () => {
      const server = await s.server;
      // Closing the server closes its transport; close the transport too in case it did not.
      if (server) await server.close().catch(() => {});
      await s.transport.close();
    })();
  };

  const refuse = (identity: string, sid: string, id: string | number, why: string) => {
    const f: Frame = {
      v: FRAME_VERSION,
      dir: "s",
      sid,
      to: identity,
      msg: {
        jsonrpc: "2.0",
        id,
        error: { code: BridgeErrorCodes.connectionClosed, message: why },
      },
      bye: why,
    };
    manager.sendTagged(channel, Tags.mcp, encodeFrame(f)).catch((e) =>
      logLine(`skytale: could not refuse an MCP session on "${channel}": ${errorOf(e).message}`)
    );
  };

  const open = (session: ChannelSession): Served => {
    const key = keyOf(session.identity, session.sessionId);
    const transport = new SessionTransport(manager, session, (reason) => {
      if (sessions.get(key)?.transport !== transport) return;
      sessions.delete(key);
      ended.add(key);
      if (ended.size > 10_000) ended.delete(ended.values().next().value!);
      options.onSession?.({ type: "end", session, reason });
    });
    const served: Served = {
      transport,
      server: (async () => {
        try {
          const server = await factory(session);
          await server.connect(transport);
          return server;
        } catch (e) {
          logLine(
            `skytale: could not start an MCP session for "${session.identity}" on "${channel}": ${
              errorOf(e).message
            }`,
          );
          transport.reason = `the server failed to start: ${errorOf(e).message}`;
          await transport.close();
          return undefined;
        }
      })(),
    };
    sessions.set(key, served);
    options.onSession?.({ type: "start", session });
    return served;
  };

  const untap = await manager.onTagged(channel, Tags.mcp, ({ sender, data }) => {
    if (closed || sender === manager.identity) return;
    const f = decodeFrame(data);
    if (!f || f.dir !== "c" || (f.to !== undefined && f.to !== manager.identity)) return;
    const key = keyOf(sender, f.sid);
    let s = sessions.get(key);
    if (f.bye !== undefined) {
      if (s) void end(s, `the client ended it (${f.bye})`, true);
      return;
    }
    const msg = f.msg!;
    if (!s) {
      // Only a request opens a session; stray responses and notifications are dropped.
      if (msg.method === undefined || msg.id === undefined) return;
      if (ended.has(key)) {
        refuse(sender, f.sid, msg.id, "This MCP session has ended; start a new one");
        return;
      }
      if (sessions.size >= max) {
        refuse(sender, f.sid, msg.id, `This server has ${max} sessions open; try again later`);
        return;
      }
      s = open({ channel, identity: sender, sessionId: f.sid });
    }
    s.transport.deliver(msg);
  });

  const timer = setInterval(async () => {
    if (closed || sessions.size === 0) return;
    let members: Set<string>;
    try {
      members = new Set(await manager.members(channel));
    } catch {
      return;
    }
    for (const s of [...sessions.values()]) {
      if (!members.has(s.transport.session.identity)) {
        void end(s, `"${s.transport.session.identity}" left the channel`, true);
      }
    }
  }, options.memberCheckMs ?? 1000);
  (timer as { unref?: () => void }).unref?.();

  let closing: Promise<void> | undefined;
  return {
    channel,
    sessions: () => [...sessions.values()].map((s) => ({ ...s.transport.session })),
    close() {
      closing ??= Promise.resolve().then(async () => {
        closed = true;
        clearInterval(timer);
        untap();
        await Promise.all([...sessions.values()].map((s) => end(s, "the server stopped", false)));
      });
      return closing;
    },
  };
}
