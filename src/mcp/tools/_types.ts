/**
 * What the MCP tools need of a channel manager (and, for the shared-context
 * tools, {@linkcode hasContext}), and their options.
 *
 * @module
 */
import type { Member } from "../../identity.ts";
import type { ChannelSummary, Message } from "../../channel/types.ts";
import type { SharedContext } from "../../context/context.ts";

/** A message returned by {@linkcode ChannelManagerLike.receive}: the SDK's one `Message` shape. */
export type ReceivedMessage = Message;

/**
 * A channel as listed by {@linkcode ChannelManagerLike.channels}: the part of the SDK's
 * `ChannelSummary` the tools show.
 */
export type ChannelListing = Pick<ChannelSummary, "channel" | "epoch" | "members"> & {
  /** False once this identity was removed from the channel. */
  active?: boolean;
};

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

/** A manager that has shared contexts. */
export interface ContextManagerLike {
  /** This agent's identity. */
  readonly identity: string;
  /** A channel's shared context. */
  context(channel: string): SharedContext;
}

/**
 * Whether a manager has shared contexts.
 *
 * @param m The manager.
 * @returns True if it has `context(channel)`.
 */
export function hasContext(m: unknown): m is ContextManagerLike {
  return typeof (m as ContextManagerLike).context === "function";
}
