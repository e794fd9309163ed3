/**
 * The contract of the MCP transports over a channel: the JSON-RPC message and
 * the SDK `Transport` shape they keep, what they need from a channel manager
 * (tagged messages, the roster, opening boxes sealed to this member), and the
 * JSON-RPC error codes the bridge answers with.
 *
 * @module
 */
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

/** A remote client's session, as the serving end (`serveChannel`) sees it. */
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
