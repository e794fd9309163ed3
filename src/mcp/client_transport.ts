/**
 * The client end of MCP over a channel: {@linkcode SkytaleTransport}, an MCP
 * SDK `Transport` that talks to the one member serving MCP there, named by its
 * did (the wire format is documented in `transport.ts`).
 *
 * @module
 */
import { InterruptedError, type SkytaleError, ValidationError } from "../errors.ts";
import { Tags } from "../channel/envelope.ts";
import { logLine } from "../runtime/env.ts";
import { boxPublicKey, didBoxKey, newBoxKey } from "../seal.ts";
import { decodeFrame, FrameKeys, FrameSealer, legacyFrame, MAX_FRAMES_PER_KEY } from "./_frame.ts";
import { bounded, BYE_WAIT_MS, errorOf, logOnce } from "./_common.ts";
import { _ServerEnd } from "./_server_end.ts";
import type {
  JsonRpcMessage,
  McpTransport,
  TaggedChannels,
  TaggedMessage,
  TransportSendOptions,
} from "./transport_contract.ts";

/** What a client session knows about its two ends. */
interface Peer {
  /** This member's did. */
  me: string;
  /** The server's did. */
  server: string;
  /** Seals this session's frames to the server's did (one key box per session). */
  sealer: Promise<FrameSealer>;
  /** Frames sealed with it so far. */
  sealed: number;
  /** Makes a new sealer (one HPKE seal). */
  newSealer: () => Promise<FrameSealer>;
  /** The server's session keys, opened with this session's private key. */
  keys: FrameKeys;
  /** This session's public key, sent in every frame: the server seals its answers to it. */
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
    const serverKey = await boxPublicKey(didBoxKey(this.#serverDid));
    const header = { dir: "c", sid: this.#sid, to: this.#serverDid } as const;
    const newSealer = () => FrameSealer.create(header, serverKey, this.channel, me);
    return {
      me,
      server: this.#serverDid,
      sealer: newSealer(),
      sealed: 0,
      newSealer,
      keys: new FrameKeys(own.privateKey),
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
        this.#ignore(d, `a version ${old.version} frame; the server needs an update`);
      }
      return;
    }
    if (f.dir !== "s" || f.sid !== this.#sid) return; // another session's traffic
    if (d.senderId !== peer.server) {
      this.#ignore(d, `not the server this session talks to (${peer.server})`);
      return;
    }
    if (f.to !== peer.me) return;
    const body = await peer.keys.open(f, this.channel, d.senderId);
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
    if (peer.sealed === MAX_FRAMES_PER_KEY) {
      peer.sealer = peer.newSealer(); // a new session key, long before AES-GCM would need one
      peer.sealed = 0;
    }
    peer.sealed++;
    // Sealed as soon as the sealer is ready, in call order (so counters grow), sent in call order.
    const sealed = peer.sealer.then((sealer) => sealer.seal({ ck: peer.ck, ...part }));
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
