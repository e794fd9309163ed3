/**
 * MCP over end-to-end encrypted channels. {@linkcode SkytaleTransport} is an
 * MCP SDK `Transport` for a client; {@linkcode serveChannel} answers many
 * remote clients on one channel, one MCP session per remote member.
 *
 * ## Who talks to whom
 * A client talks to exactly one server: the member whose did it was given
 * (`serverDid`; `skytale expose` prints it). Every frame is checked against the
 * sender's did as MLS proves it (the `senderId` of the message), never against
 * a field of the frame: a frame from any other member is ignored and logged,
 * so a member that answers first cannot take a session over.
 *
 * ## Wire format (frame version 2)
 * Each JSON-RPC message travels as one MLS application message tagged `mcp`
 * (chat messages use tag `chat`; neither layer sees the other's traffic). Its
 * body is a clear header followed by an HPKE box (RFC 9180 base mode,
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM):
 *
 * ```text
 * u8 version = 2 | u8 dir ("c" | "s") | u8 n | sid (n bytes, UTF-8)
 *   | u8 m | to (m bytes, the recipient's did) | enc (32 bytes) | ciphertext
 * ```
 *
 * `dir` is `c` from a client to a server and `s` back. `sid` is the client
 * transport's random session id; `to` is the recipient's did. HPKE `info` is
 * `skytale mcp frame v2`; the AAD is the header bytes, `\n`, the channel,
 * `\n` and the sender's did, so a box cannot be moved to another session,
 * channel or sender. The box holds UTF-8 JSON
 * `{ "ck"?: hex, "msg"?: JSON-RPC, "bye"?: string }`:
 *
 * - a client seals to the X25519 form of the server's Ed25519 did key, and
 *   puts its session key `ck` (a fresh X25519 public key per transport, never
 *   stored) in every frame;
 * - the server opens with its identity key (the manager's `openSealed`) and
 *   seals its answers to the latest `ck` of that session.
 *
 * `bye` ends the session (with a reason). A session is keyed by (the
 * sender's did, `sid`). Other members of the channel, and the relay, see the
 * header (who talks to whom, the session id), sizes and timing, never a
 * request or a result. Version 1 frames (unsealed JSON) are refused with a
 * line on stderr.
 *
 * @module
 */
import { InterruptedError, type SkytaleError, ValidationError } from "../errors.ts";
import { Tags } from "../channel/envelope.ts";
import { logLine } from "../runtime/env.ts";
import {
  type BoxPrivateKey,
  type BoxPublicKey,
  boxPublicKey,
  didBoxKey,
  newBoxKey,
} from "../seal.ts";
import {
  decodeFrame,
  type Frame,
  type FrameBody,
  type FrameHeader,
  legacyFrame,
  openFrame,
  sealFrame,
} from "./_frame.ts";

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

/** A message under one tag, as {@linkcode TaggedChannels.onTagged} hands it over. */
export interface TaggedMessage {
  /** The sender's display name, from its MLS credential (a label). */
  sender: string;
  /** The sender's did, proven by MLS: the only thing the transport trusts. */
  senderId: string;
  /** The relay's sequence number. */
  seq: number;
  /** The body. */
  data: Uint8Array;
}

/** What the transport needs from a channel manager (`SkytaleChannelManager` fits). */
export interface TaggedChannels {
  /** This member's display name. */
  readonly identity: string;
  /**
   * This member's did.
   *
   * @returns At least its did (`SkytaleChannelManager.whoami` gives name and fingerprint too).
   */
  whoami(): Promise<{ did: string }>;
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
   * @param handler Called per message, in order, with the sender's name and did.
   * @returns A function removing the handler.
   */
  onTagged(
    channel: string,
    tag: string,
    handler: (d: TaggedMessage) => void,
  ): Promise<() => void>;
  /**
   * Lists the channel's members with their dids.
   *
   * @param channel The channel.
   * @returns At least the name and did of each.
   */
  roster(channel: string): Promise<{ name: string; did: string }[]>;
  /**
   * Opens an HPKE box sealed to this member's did (needed by {@linkcode serveChannel} only).
   *
   * @param box `enc || ciphertext`.
   * @param info The HPKE `info`.
   * @param aad The data the box is bound to.
   * @returns The plaintext.
   */
  openSealed(box: Uint8Array, info: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
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

const BYE_WAIT_MS = 2000;
/** At most this many senders are remembered per transport for "ignored" log lines. */
const MAX_LOGGED = 64;

/** Logs `line` once per `key` (bounded), so a noisy member cannot flood stderr. */
function logOnce(seen: Set<string>, key: string, line: string): void {
  if (seen.has(key) || seen.size >= MAX_LOGGED) return;
  seen.add(key);
  logLine(line);
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

/** What a client session knows about its two ends. */
interface Peer {
  /** This member's did. */
  me: string;
  /** The server's did. */
  server: string;
  /** The server's box key (from its did). */
  serverKey: BoxPublicKey;
  /** This session's private key: the server seals its answers to it. */
  own: BoxPrivateKey;
  /** Its public half, sent in every frame. */
  ck: Uint8Array;
}

/** Options of {@linkcode SkytaleTransport}. */
export interface SkytaleTransportOptions {
  /**
   * The did of the member serving MCP on the channel (`did:key:z6Mk…`, as
   * `skytale expose` prints it): the authority. Requests are sealed to it and
   * only frames its key sent (as MLS proves) are accepted.
   */
  serverDid?: string;
  /**
   * The display name of the server, used only when `serverDid` is left out:
   * it is looked up once in the channel's roster (names are unique and pinned
   * per channel) and from then on the did found is the authority. Prefer
   * `serverDid`: a name is only as good as whoever claimed it first.
   */
  server?: string;
  /**
   * Resume this session id (default: a new random one). An SDK `Client` skips
   * `initialize` on a transport that has a session id.
   */
  sessionId?: string;
  /** How long {@linkcode SkytaleTransport.read} waits by default, in seconds (default 30). */
  readTimeout?: number;
  /**
   * `server`: this end serves MCP (an SDK `McpServer` connects to it) to one
   * client at a time, the first whose requests reach it; a client of another
   * member at once is answered with a JSON-RPC error. For many clients, use
   * {@linkcode serveChannel}. Default: `client` when `serverDid` or `server`
   * is given, `server` otherwise (`server.connect(new SkytaleTransport(mgr, channel))`).
   */
  role?: "client" | "server";
}

/**
 * The MCP SDK `Transport` for a client over an end-to-end encrypted channel:
 * JSON-RPC messages are MLS application messages tagged `mcp`, sealed to the
 * one member serving MCP there (see {@linkcode serveChannel}), whose did it
 * is given; frames from any other member are ignored and logged.
 *
 * Pass it to an SDK `Client`'s `connect`, or use `write`/`read` directly.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 * import { createMcpServer } from "@skytale/mcp/mcp";
 * import { serveChannel, SkytaleTransport } from "@skytale/mcp/transport";
 *
 * await using relay = await startTestRelay();
 * const agent = (identity: string) =>
 *   new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
 * await using host = agent("host");
 * await using user = agent("user");
 * await host.create("org/ns/mcp-rpc");
 * await user.join("org/ns/mcp-rpc", await host.addMember("org/ns/mcp-rpc", await user.keyPackage()));
 * await using _serving = await serveChannel(host, "org/ns/mcp-rpc", () => createMcpServer(host));
 *
 * // Without an SDK Client: write JSON-RPC and read the answers.
 * await using transport = new SkytaleTransport(user, "org/ns/mcp-rpc", {
 *   serverDid: (await host.whoami()).did, // `skytale expose` prints it
 * });
 * await transport.write({
 *   jsonrpc: "2.0",
 *   id: 1,
 *   method: "initialize",
 *   params: {
 *     protocolVersion: "2025-06-18",
 *     capabilities: {},
 *     clientInfo: { name: "user", version: "1.0.0" },
 *   },
 * });
 * const response = await transport.read();
 * assert.equal((response as { id?: number }).id, 1);
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
  #serverDid: string | undefined;
  #serverName: string | undefined;
  #peer: Peer | undefined;
  #inbound: Promise<void> = Promise.resolve();
  #logged = new Set<string>();
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
  /** The serving end, when `role` is `server`. */
  #end: _ServerEnd | undefined;

  /**
   * Creates a client transport for a channel (nothing is sent before `start`, `send` or `write`).
   *
   * @param manager The channel manager (`SkytaleChannelManager`), already a member of `channel`.
   * @param channel The channel on which the server is served.
   * @param options The server's did (or name), a fixed session id, the read timeout.
   * @throws {ValidationError} `invalid_argument` without a server did or name, or with a did
   * that is not an Ed25519 `did:key`.
   */
  constructor(manager: TaggedChannels, channel: string, options: SkytaleTransportOptions = {}) {
    const role = options.role ??
      (options.serverDid === undefined && options.server === undefined ? "server" : "client");
    if (options.serverDid !== undefined) didBoxKey(options.serverDid);
    else if (options.server === undefined && role === "client") {
      throw new ValidationError(
        "invalid_argument",
        `SkytaleTransport on "${channel}" needs the server's did (options.serverDid), as \`skytale expose\` prints it`,
      );
    }
    if (role === "server") {
      this.#end = new _ServerEnd(manager, channel, (m) => this.#deliver(m), (reason) => {
        this.#endReason = reason;
        void this.#close(false);
      });
    }
    this.#mgr = manager;
    this.channel = channel;
    this.#serverDid = options.serverDid;
    this.#serverName = options.serverDid === undefined ? options.server : undefined;
    this.sessionId = options.sessionId;
    this.#sid = options.sessionId ?? crypto.randomUUID();
    this.#readTimeout = options.readTimeout ?? 30;
  }

  /** Why the session ended (e.g. the server ended it), once closed. */
  get closeReason(): string | undefined {
    return this.#closed ? (this.#endReason ?? "closed") : undefined;
  }

  /** The display name of the server this session talks to, once known. */
  get server(): string | undefined {
    return this.#serverName;
  }

  /** The did of the server this session talks to (given, or once looked up by name). */
  get serverDid(): string | undefined {
    return this.#serverDid;
  }

  /**
   * Starts receiving. The SDK's `connect` calls it; `write`/`read` start implicitly.
   *
   * @returns When subscribed to the channel.
   * @throws {SkytaleError} `invalid_argument` if already started, `closed` after close.
   */
  async start(): Promise<void> {
    if (this.#startCalled) {
      throw new ValidationError(
        "invalid_argument",
        `SkytaleTransport on "${this.channel}" is already started`,
      );
    }
    this.#startCalled = true;
    if (this.#end) await this.#end.start();
    else await this.#ensureTap();
  }

  #ensureTap(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    this.#tap ??= (async () => {
      this.#peer = await this.#resolvePeer();
      const untap = await this.#mgr.onTagged(this.channel, Tags.mcp, (d) => this.#onData(d));
      if (this.#closed) untap();
      else this.#untap = untap;
    })();
    return this.#tap;
  }

  /** Who this member is, the server's did and key, and this session's own key. */
  async #resolvePeer(): Promise<Peer> {
    const me = (await this.#mgr.whoami()).did;
    if (this.#serverDid === undefined || this.#serverName === undefined) {
      const roster = await this.#mgr.roster(this.channel);
      if (this.#serverDid === undefined) {
        const m = roster.find((r) => r.name === this.#serverName);
        if (!m) {
          throw new ValidationError(
            "unknown_member",
            `No member named "${this.#serverName}" on "${this.channel}" to talk MCP to`,
          );
        }
        this.#serverDid = m.did;
      } else this.#serverName = roster.find((r) => r.did === this.#serverDid)?.name;
    }
    const own = await newBoxKey();
    return {
      me,
      server: this.#serverDid,
      serverKey: await boxPublicKey(didBoxKey(this.#serverDid)),
      own: own.privateKey,
      ck: own.publicKey,
    };
  }

  #closedError(): SkytaleError {
    return new InterruptedError(
      "closed",
      `MCP session on "${this.channel}" is closed${this.#endReason ? `: ${this.#endReason}` : ""}`,
    );
  }

  #onData(d: TaggedMessage): void {
    // In order, one at a time: opening a box is asynchronous.
    this.#inbound = this.#inbound.then(() => this.#receive(d)).catch((e) =>
      logLine(`skytale: an MCP frame on "${this.channel}" failed: ${errorOf(e).message}`)
    );
  }

  #ignore(d: TaggedMessage, why: string): void {
    logOnce(
      this.#logged,
      `${d.senderId}\n${why}`,
      `skytale: ignored MCP frames on "${this.channel}" from "${d.sender}" (${d.senderId}): ${why}`,
    );
  }

  async #receive(d: TaggedMessage): Promise<void> {
    const peer = this.#peer;
    if (this.#closed || !peer) return;
    const f = decodeFrame(d.data);
    if (!f) {
      const old = legacyFrame(d.data);
      if (old?.dir === "s" && old.sid === this.#sid) {
        this.#ignore(d, "an unsealed (version 1) frame; the server needs an update");
      }
      return;
    }
    if (f.dir !== "s" || f.sid !== this.#sid) return; // another session's traffic
    if (d.senderId !== peer.server) {
      this.#ignore(d, `not the server this session talks to (${peer.server})`);
      return;
    }
    if (f.to !== peer.me) return;
    const body = await openFrame(f, peer.own, this.channel, d.senderId);
    if (!body) {
      this.#ignore(d, "a frame that does not open with this session's key");
      return;
    }
    if (this.#closed) return;
    this.#serverName = d.sender;
    this.sessionId ??= this.#sid;
    if (body.msg) this.#deliver(body.msg);
    if (body.bye !== undefined) {
      this.#endReason = `server "${d.sender}" ended the session (${body.bye})`;
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
    if (this.#end) {
      await this.#end.start();
      await this.#end.send(message);
      this.sessionId = this.#end.sessionId;
      return;
    }
    await this.#ensureTap();
    await this.#enqueue({ msg: message });
  }

  #enqueue(part: { msg?: JsonRpcMessage; bye?: string }): Promise<void> {
    const peer = this.#peer!;
    // Sealed at once, sent in call order.
    const sealed = sealFrame(
      { dir: "c", sid: this.#sid, to: peer.server },
      { ck: peer.ck, ...part },
      peer.serverKey,
      this.channel,
      peer.me,
    );
    sealed.catch(() => {});
    const p = this.#sending.then(async () =>
      this.#mgr.sendTagged(this.channel, Tags.mcp, await sealed)
    );
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
    if (this.#end) await this.#end.start();
    else await this.#ensureTap();
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
          new InterruptedError(
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

  /**
   * Closes the transport ({@linkcode close}) when an `await using` block
   * ends; the manager stays open.
   *
   * @returns When closed.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #close(sayBye: boolean): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    // Deferred, so that an onclose handler calling close() again finds #closing set.
    this.#closing = Promise.resolve().then(async () => {
      await this.#end?.close();
      if (sayBye && this.#tap) {
        await bounded(
          this.#tap.then(() => this.#enqueue({ bye: "closed" })),
          BYE_WAIT_MS,
        );
      }
      this.#untap?.();
      const err = this.#closedError();
      for (const r of this.#readers.splice(0)) r.reject(err);
      this.onclose?.();
    });
    return this.#closing;
  }
}

/**
 * The serving end of a {@linkcode SkytaleTransport} with `role: "server"`:
 * {@linkcode serveChannel} limited to one session, whose messages it hands to
 * the transport. When that session ends, the transport closes.
 */
class _ServerEnd {
  #mgr: TaggedChannels;
  #channel: string;
  #deliver: (m: JsonRpcMessage) => void;
  #ended: (reason: string) => void;
  #serving: Promise<ChannelServing> | undefined;
  #session: McpTransport | undefined;
  sessionId: string | undefined;

  constructor(
    mgr: TaggedChannels,
    channel: string,
    deliver: (m: JsonRpcMessage) => void,
    ended: (reason: string) => void,
  ) {
    this.#mgr = mgr;
    this.#channel = channel;
    this.#deliver = deliver;
    this.#ended = ended;
  }

  start(): Promise<ChannelServing> {
    this.#serving ??= serveChannel(this.#mgr, this.#channel, () => ({
      connect: async (t: McpTransport) => {
        this.#session = t;
        this.sessionId = t.sessionId;
        t.onmessage = (m) => this.#deliver(m);
        await t.start();
      },
      close: () => Promise.resolve(),
    }), {
      maxSessions: 1,
      onSession: (e) => {
        if (e.type === "end") {
          this.#ended(`client "${e.session.identity}" ended the session (${e.reason ?? "closed"})`);
        }
      },
    });
    return this.#serving;
  }

  async send(m: JsonRpcMessage): Promise<void> {
    if (!this.#session) {
      throw new ValidationError(
        "invalid_argument",
        `No MCP client has opened a session on "${this.#channel}" yet: a server end only answers`,
      );
    }
    await this.#session.send(m);
  }

  async close(): Promise<void> {
    const serving = this.#serving;
    this.#serving = undefined;
    await (await serving?.catch(() => undefined))?.close();
  }
}

/** A remote client's session, as {@linkcode serveChannel} sees it. */
export interface ChannelSession {
  /** The channel. */
  channel: string;
  /** The client's display name, from its MLS credential (a label). */
  identity: string;
  /** The client's did, as MLS proves it: sessions are keyed by it. */
  did: string;
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

/**
 * A channel being served by {@linkcode serveChannel}; `await using` closes it
 * when the block ends.
 */
export interface ChannelServing extends AsyncDisposable {
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
  #me: string;
  #clientKey: Promise<BoxPublicKey> | undefined;
  #clientKeyHex = "";
  #started = false;
  #closing: Promise<void> | undefined;
  #queue: JsonRpcMessage[] = [];
  #sending: Promise<unknown> = Promise.resolve();
  #onEnd: (reason: string) => void;
  /** Set before closing when the client is not to be told (it said bye, or left). */
  silent = false;
  reason = "closed by the server";

  constructor(
    mgr: TaggedChannels,
    me: string,
    session: ChannelSession,
    onEnd: (reason: string) => void,
  ) {
    this.#mgr = mgr;
    this.#me = me;
    this.session = session;
    this.sessionId = session.sessionId;
    this.#onEnd = onEnd;
  }

  start(): Promise<void> {
    if (this.#started) {
      return Promise.reject(
        new ValidationError(
          "invalid_argument",
          `Session "${this.sessionId}" of "${this.session.identity}" is already started`,
        ),
      );
    }
    this.#started = true;
    for (const m of this.#queue.splice(0)) this.deliver(m);
    return Promise.resolve();
  }

  /** Takes the client's session key from its latest frame: answers are sealed to it. */
  setClientKey(ck: Uint8Array): void {
    const hex = ck.toHex();
    if (hex === this.#clientKeyHex) return;
    this.#clientKeyHex = hex;
    this.#clientKey = boxPublicKey(ck);
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
      throw new InterruptedError(
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
    const ch = this.session.channel;
    const sealed = sealServerFrame(
      this.session,
      part,
      this.#clientKey!,
      this.#me,
    );
    sealed.catch(() => {});
    const p = this.#sending.then(async () => this.#mgr.sendTagged(ch, Tags.mcp, await sealed));
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

/** Seals a server frame to a client's session key. */
async function sealServerFrame(
  session: ChannelSession,
  body: FrameBody,
  clientKey: Promise<BoxPublicKey>,
  me: string,
): Promise<Uint8Array> {
  const header: FrameHeader = { dir: "s", sid: session.sessionId, to: session.did };
  return await sealFrame(header, body, await clientKey, session.channel, me);
}

interface Served {
  transport: SessionTransport;
  server: Promise<McpServerLike | undefined>;
}

/**
 * Serves MCP on a channel: every remote member (keyed by its did, as MLS
 * proves it, and its client's session id) gets its own session, with
 * a server made by `factory`, so one factory answers them all without request
 * id clashes. A session ends when its client closes, when its member leaves
 * or is removed from the channel, or when its server closes. Requests are
 * sealed to this member's did and answers to the client's session key (see
 * the module doc): other members see neither. Clients need this member's did
 * (`(await manager.whoami()).did`) to connect.
 *
 * Any SDK `McpServer` (with your own tools) fits the factory; here the
 * Skytale tools of {@linkcode createMcpServer} serve a member's SDK `Client`:
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Client } from "@modelcontextprotocol/sdk/client";
 * import { MemoryStore, SkytaleChannelManager, startTestRelay } from "@skytale/mcp";
 * import { createMcpServer } from "@skytale/mcp/mcp";
 * import { serveChannel, SkytaleTransport } from "@skytale/mcp/transport";
 *
 * await using relay = await startTestRelay();
 * const agent = (identity: string) =>
 *   new SkytaleChannelManager({ identity, endpoint: relay.url, store: new MemoryStore() });
 * await using host = agent("host");
 * await using user = agent("user");
 * await host.create("acme/tools/mcp");
 * await user.join("acme/tools/mcp", await host.addMember("acme/tools/mcp", await user.keyPackage()));
 *
 * // The host answers each member of the channel with its own MCP server.
 * await using _serving = await serveChannel(host, "acme/tools/mcp", () => createMcpServer(host));
 * await using transport = new SkytaleTransport(user, "acme/tools/mcp", {
 *   serverDid: (await host.whoami()).did,
 * });
 * const client = new Client({ name: "user", version: "1.0.0" });
 * await client.connect(transport);
 * const { tools } = await client.listTools();
 * assert.ok(tools.some((t) => t.name === "skytale_send"));
 * ```
 *
 * @param manager The channel manager, a member of `channel`.
 * @param channel The channel to serve.
 * @param factory Makes the server of one session (called once per session).
 * @param options Session limit, membership check interval, session events.
 * @returns The running service.
 * @throws {ValidationError} `invalid_argument` if this member's identity is not an Ed25519 did.
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
  const keyOf = (did: string, sid: string) => `${did}\n${sid}`;
  const me = (await manager.whoami()).did;
  didBoxKey(me); // only an Ed25519 did:key can be sealed to
  const logged = new Set<string>();
  const ignore = (d: TaggedMessage, why: string) =>
    logOnce(
      logged,
      `${d.senderId}\n${why}`,
      `skytale: ignored MCP frames on "${channel}" from "${d.sender}" (${d.senderId}): ${why}`,
    );

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

  const refuse = (session: ChannelSession, ck: Uint8Array, id: string | number, why: string) => {
    const msg: JsonRpcMessage = {
      jsonrpc: "2.0",
      id,
      error: { code: BridgeErrorCodes.connectionClosed, message: why },
    };
    sealServerFrame(session, { msg, bye: why }, boxPublicKey(ck), me)
      .then((body) => manager.sendTagged(channel, Tags.mcp, body))
      .catch((e) =>
        logLine(`skytale: could not refuse an MCP session on "${channel}": ${errorOf(e).message}`)
      );
  };

  const open = (session: ChannelSession): Served => {
    const key = keyOf(session.did, session.sessionId);
    const transport = new SessionTransport(manager, me, session, (reason) => {
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

  const receive = async (d: TaggedMessage): Promise<void> => {
    if (closed || d.senderId === me) return;
    const f: Frame | undefined = decodeFrame(d.data);
    if (!f) {
      if (legacyFrame(d.data)?.dir === "c") {
        ignore(d, "an unsealed (version 1) frame; the client needs an update");
      }
      return;
    }
    if (f.dir !== "c" || f.to !== me) return; // an answer, or a request for another server
    const body = await openFrame(
      f,
      (box, info, aad) => manager.openSealed(box, info, aad),
      channel,
      d.senderId,
    );
    if (!body?.ck) {
      ignore(d, "a frame that does not open with this member's key");
      return;
    }
    if (closed) return;
    const key = keyOf(d.senderId, f.sid);
    let s = sessions.get(key);
    s?.transport.setClientKey(body.ck);
    if (body.bye !== undefined) {
      if (s) void end(s, `the client ended it (${body.bye})`, true);
      return;
    }
    const msg = body.msg!;
    if (!s) {
      // Only a request opens a session; stray responses and notifications are dropped.
      if (msg.method === undefined || msg.id === undefined) return;
      const session = { channel, identity: d.sender, did: d.senderId, sessionId: f.sid };
      if (ended.has(key)) {
        refuse(session, body.ck, msg.id, "This MCP session has ended; start a new one");
        return;
      }
      if (sessions.size >= max) {
        refuse(session, body.ck, msg.id, `This server has ${max} sessions open; try again later`);
        return;
      }
      s = open(session);
      s.transport.setClientKey(body.ck);
    }
    s.transport.deliver(msg);
  };
  // Frames are handled in order, one at a time: opening a box is asynchronous.
  let inbound = Promise.resolve();
  const untap = await manager.onTagged(channel, Tags.mcp, (d) => {
    inbound = inbound.then(() => receive(d)).catch((e) =>
      logLine(`skytale: an MCP frame on "${channel}" failed: ${errorOf(e).message}`)
    );
  });

  const timer = setInterval(async () => {
    if (closed || sessions.size === 0) return;
    let members: Set<string>;
    try {
      members = new Set((await manager.roster(channel)).map((m) => m.did));
    } catch {
      return;
    }
    for (const s of [...sessions.values()]) {
      if (!members.has(s.transport.session.did)) {
        void end(s, `"${s.transport.session.identity}" left the channel`, true);
      }
    }
  }, options.memberCheckMs ?? 1000);
  (timer as { unref?: () => void }).unref?.();

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= Promise.resolve().then(async () => {
      closed = true;
      clearInterval(timer);
      untap();
      await Promise.all([...sessions.values()].map((s) => end(s, "the server stopped", false)));
    });
    return closing;
  };
  return {
    channel,
    sessions: () => [...sessions.values()].map((s) => ({ ...s.transport.session })),
    close,
    [Symbol.asyncDispose]: close,
  };
}
