/**
 * The serving end of MCP over a channel: {@linkcode serveChannel} answers
 * every remote member with its own MCP session (the wire format is documented
 * in `transport.ts`).
 *
 * @module
 */
import { Tags } from "../channel/envelope.ts";
import { logLine } from "../runtime/env.ts";
import { didBoxKey } from "../seal.ts";
import {
  decodeFrame,
  type Frame,
  type FrameBody,
  FrameKeys,
  FrameSealer,
  legacyFrame,
} from "./_frame.ts";
import { errorOf, logOnce } from "./_common.ts";
import { SessionTransport } from "./_session_transport.ts";
import {
  BridgeErrorCodes,
  type ChannelSession,
  type JsonRpcMessage,
  type McpTransport,
  type TaggedChannels,
  type TaggedMessage,
} from "./transport_contract.ts";

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

interface Served {
  transport: SessionTransport;
  server: Promise<McpServerLike | undefined>;
}

/** Sessions that ended are remembered (a late request on one is refused) up to this many. */
const MAX_ENDED = 10_000;

/** The state of one channel being served: its sessions and what arrives for them. */
class ChannelServer {
  readonly sessions = new Map<string, Served>();
  /** Sessions that ended: a late request on one is refused, not served by a fresh server. */
  readonly #ended = new Set<string>();
  readonly #logged = new Set<string>();
  readonly #mgr: TaggedChannels;
  readonly #channel: string;
  readonly #me: string;
  readonly #factory: (session: ChannelSession) => McpServerLike | Promise<McpServerLike>;
  readonly #options: ServeChannelOptions;
  readonly #keys: FrameKeys;
  closed = false;

  constructor(
    mgr: TaggedChannels,
    channel: string,
    me: string,
    factory: (session: ChannelSession) => McpServerLike | Promise<McpServerLike>,
    options: ServeChannelOptions,
  ) {
    this.#mgr = mgr;
    this.#channel = channel;
    this.#me = me;
    this.#factory = factory;
    this.#options = options;
    this.#keys = new FrameKeys((box, info, aad) => mgr.openSealed(box, info, aad));
  }

  #ignore(d: TaggedMessage, why: string): void {
    logOnce(
      this.#logged,
      `${d.senderId}\n${why}`,
      `skytale: ignored MCP frames on "${this.#channel}" from "${d.sender}" (${d.senderId}): ${why}`,
    );
  }

  /** Ends a session: closes its server and its transport (telling the client unless `silent`). */
  end(s: Served, reason: string, silent: boolean): Promise<void> {
    s.transport.silent ||= silent;
    s.transport.reason = reason;
    return (async () => {
      const server = await s.server;
      // Closing the server closes its transport; close the transport too in case it did not.
      if (server) await server.close().catch(() => {});
      await s.transport.close();
    })();
  }

  /** Answers a request that opens no session with an error, and ends that session. */
  #refuse(session: ChannelSession, ck: Uint8Array, id: string | number, why: string): void {
    const msg: JsonRpcMessage = {
      jsonrpc: "2.0",
      id,
      error: { code: BridgeErrorCodes.connectionClosed, message: why },
    };
    const header = { dir: "s", sid: session.sessionId, to: session.did } as const;
    FrameSealer.create(header, ck, this.#channel, this.#me)
      .then((sealer) => sealer.seal({ msg, bye: why }))
      .then((body) => this.#mgr.sendTagged(this.#channel, Tags.mcp, body))
      .catch((e) =>
        logLine(
          `skytale: could not refuse an MCP session on "${this.#channel}": ${errorOf(e).message}`,
        )
      );
  }

  /** Starts a session: its transport, and its server from the factory. */
  #open(session: ChannelSession): Served {
    const key = `${session.did}\n${session.sessionId}`;
    const transport = new SessionTransport(this.#mgr, this.#me, session, (reason) => {
      if (this.sessions.get(key)?.transport !== transport) return;
      this.sessions.delete(key);
      this.#keys.forget(this.#channel, session.did, "c", session.sessionId);
      this.#ended.add(key);
      if (this.#ended.size > MAX_ENDED) this.#ended.delete(this.#ended.values().next().value!);
      this.#options.onSession?.({ type: "end", session, reason });
    });
    const served: Served = { transport, server: this.#startServer(session, transport) };
    this.sessions.set(key, served);
    this.#options.onSession?.({ type: "start", session });
    return served;
  }

  async #startServer(
    session: ChannelSession,
    transport: SessionTransport,
  ): Promise<McpServerLike | undefined> {
    try {
      const server = await this.#factory(session);
      await server.connect(transport);
      return server;
    } catch (e) {
      logLine(
        `skytale: could not start an MCP session for "${session.identity}" on "${this.#channel}": ${
          errorOf(e).message
        }`,
      );
      transport.reason = `the server failed to start: ${errorOf(e).message}`;
      await transport.close();
      return undefined;
    }
  }

  /** Opens a frame addressed to this server, or says why not (`undefined`: not for it). */
  async #unseal(d: TaggedMessage): Promise<{ f: Frame; body: FrameBody } | undefined> {
    const f = decodeFrame(d.data);
    if (!f) {
      const old = legacyFrame(d.data);
      if (old?.dir === "c") {
        this.#ignore(d, `a version ${old.version} frame; the client needs an update`);
      }
      return undefined;
    }
    if (f.dir !== "c" || f.to !== this.#me) return undefined; // an answer, or for another server
    const body = await this.#keys.open(f, this.#channel, d.senderId);
    if (!body?.ck) {
      this.#ignore(d, "a frame that does not open with this member's key");
      return undefined;
    }
    return { f, body };
  }

  /** Handles one frame: hands a message to its session, opening one for a first request. */
  async receive(d: TaggedMessage): Promise<void> {
    if (this.closed || d.senderId === this.#me) return;
    const opened = await this.#unseal(d);
    if (!opened || this.closed) return;
    const { f, body } = opened;
    const key = `${d.senderId}\n${f.sid}`;
    let s = this.sessions.get(key);
    s?.transport.setClientKey(body.ck!);
    if (body.bye !== undefined) {
      if (s) void this.end(s, `the client ended it (${body.bye})`, true);
      return;
    }
    const msg = body.msg!;
    if (!s) {
      // Only a request opens a session; stray responses and notifications are dropped.
      if (msg.method === undefined || msg.id === undefined) return;
      const session = {
        channel: this.#channel,
        identity: d.sender,
        did: d.senderId,
        sessionId: f.sid,
      };
      const max = this.#options.maxSessions ?? 64;
      if (this.#ended.has(key)) {
        this.#refuse(session, body.ck!, msg.id, "This MCP session has ended; start a new one");
        return;
      }
      if (this.sessions.size >= max) {
        this.#refuse(
          session,
          body.ck!,
          msg.id,
          `This server has ${max} sessions open; try again later`,
        );
        return;
      }
      s = this.#open(session);
      s.transport.setClientKey(body.ck!);
    }
    s.transport.deliver(msg);
  }

  /** Ends the sessions of members no longer in the channel. */
  async checkMembers(): Promise<void> {
    if (this.closed || this.sessions.size === 0) return;
    let members: Set<string>;
    try {
      members = new Set((await this.#mgr.roster(this.#channel)).map((m) => m.did));
    } catch {
      return;
    }
    for (const s of [...this.sessions.values()]) {
      if (!members.has(s.transport.session.did)) {
        void this.end(s, `"${s.transport.session.identity}" left the channel`, true);
      }
    }
  }
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
  const me = (await manager.whoami()).did;
  didBoxKey(me); // only an Ed25519 did:key can be sealed to
  const server = new ChannelServer(manager, channel, me, factory, options);
  // Frames are handled in order, one at a time: opening a frame is asynchronous.
  let inbound = Promise.resolve();
  const untap = await manager.onTagged(channel, Tags.mcp, (d) => {
    inbound = inbound.then(() => server.receive(d)).catch((e) =>
      logLine(`skytale: an MCP frame on "${channel}" failed: ${errorOf(e).message}`)
    );
  });
  const timer = setInterval(() => void server.checkMembers(), options.memberCheckMs ?? 1000);
  (timer as { unref?: () => void }).unref?.();

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= Promise.resolve().then(async () => {
      server.closed = true;
      clearInterval(timer);
      untap();
      const all = [...server.sessions.values()];
      await Promise.all(all.map((s) => server.end(s, "the server stopped", false)));
    });
    return closing;
  };
  return {
    channel,
    sessions: () => [...server.sessions.values()].map((s) => ({ ...s.transport.session })),
    close,
    [Symbol.asyncDispose]: close,
  };
}
