/**
 * The public shapes of `SkytaleChannelManager`: its options, the
 * messages it hands out, the channels it lists and the events it reports.
 *
 * @module
 */
import type { Member } from "../identity.ts";
import type { Store } from "../store/types.ts";

/** Options of `SkytaleChannelManager`; each falls back to its environment variable. */
export interface SkytaleOptions {
  /** This agent's identity (`SKYTALE_IDENTITY`, default `mcp-agent`). */
  identity?: string;
  /** Relay URL, `ws(s)://` or `http(s)://` (`SKYTALE_RELAY`; unset = the embedded local relay). */
  endpoint?: string;
  /** API key `sk_live_…` for an authenticated relay (`SKYTALE_API_KEY`). */
  apiKey?: string;
  /** Token API URL (`SKYTALE_API_URL`, default: the relay's own origin). */
  apiUrl?: string;
  /**
   * Where this identity's MLS state lives (`SKYTALE_DATA_DIR`, default
   * `$SKYTALE_HOME`, i.e. `~/.skytale`). The embedded local relay does not
   * live here but in `$SKYTALE_HOME`, shared by every data dir of the user.
   */
  dataDir?: string;
  /** MLS ciphersuite name (default `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`). */
  suite?: string;
  /** A store to use instead of files under `dataDir` (e.g. a `MemoryStore`). */
  store?: Store;
  /**
   * Size buckets, in bytes, that every message is padded to (its whole MLS
   * encoding, as the relay stores it), so the relay and the network see only
   * the bucket, not the length. Above the largest bucket, sizes grow in
   * multiples of it. Default {@linkcode DEFAULT_PADDING_BUCKETS}; `false`
   * turns padding off (ts-mls' default then pads small messages to 256 bytes).
   */
  padding?: readonly number[] | false;
  /**
   * Cover traffic: while a channel is open, send a dummy message at random
   * intervals averaging `meanIntervalMs` (exponentially distributed), padded
   * like a short message and indistinguishable from one at the relay; members
   * drop it (counted in `SkytaleChannelManager.metrics`). Off by default.
   */
  coverTraffic?: { meanIntervalMs: number };
  /**
   * Keep an encrypted, verifiable audit log of every channel (`src/audit/`):
   * joins, adds, removals, key rotations and message metadata, appended as a
   * hash chain to a relay mailbox that `SkytaleChannelManager.exportAuditKey`'s
   * key opens. Default: `SKYTALE_AUDIT` is `1`; else off.
   */
  audit?: boolean;
}

/** The default size buckets of {@linkcode SkytaleOptions.padding}: 256 B to 32 KiB. */
export const DEFAULT_PADDING_BUCKETS: readonly number[] = [
  256,
  512,
  1024,
  2048,
  4096,
  8192,
  16384,
  32768,
];

/** A received message. */
export interface Message {
  /** The sender's display name, taken from its MLS credential. */
  sender: string;
  /** The sender's stable id: the `did:key` its credential is bound to (see {@linkcode Member}). */
  senderId: string;
  /** The relay's per-channel sequence number. */
  seq: number;
  /** When the relay stored the message, ISO-8601. */
  time: string;
  /** The text. */
  text: string;
}

/** A channel this identity belongs to. */
export interface ChannelSummary {
  /** The channel name. */
  channel: string;
  /** Its MLS ciphersuite. */
  ciphersuite: string;
  /** The MLS epoch. */
  epoch: number;
  /** Member identities. */
  members: string[];
  /** The members with their dids and fingerprints. */
  roster: Member[];
  /** False once this identity was removed. */
  active: boolean;
}

/** Options of `SkytaleChannelManager.receive`. */
export interface ReceiveOptions {
  /**
   * Seconds to wait when nothing is there yet (default 5, at most 300). The
   * call returns as soon as the first message arrives, not at the end.
   */
  timeout?: number | undefined;
  /** Gives the wait up: the call rejects with a `SkytaleError` coded `aborted`. */
  signal?: AbortSignal | undefined;
  /**
   * Reads from a cursor instead of consuming: every message with a greater seq
   * still known here (the recent history, last 100 per channel, and the
   * buffer), handed out or not. Nothing is consumed; pass the last seq seen
   * to read on.
   */
  afterSeq?: number | undefined;
  /** Returns what is buffered without consuming it. */
  peek?: boolean | undefined;
  /** The most messages to return (default: all); the rest stay buffered. */
  max?: number | undefined;
}

/** Options of `SkytaleChannelManager.on` for `"message"` listeners. */
export interface MessageListenerOptions {
  /** Only this channel's messages (default: every channel). */
  channel?: string | undefined;
  /**
   * Only the messages this accepts are taken; the others stay buffered for
   * `receive()` and other consumers.
   */
  filter?: ((message: Message, channel: string) => boolean) | undefined;
}

/** A change in the list of this identity's channels. */
export interface MembershipChange {
  /** The channel. */
  channel: string;
  /** `joined` (created or joined), `left`, or `removed` by another member. */
  change: "joined" | "left" | "removed";
}

/** Data carried on a channel under a tag other than `chat` (used by the MCP transport). */
export interface TaggedData {
  /** The sender's identity, from its MLS credential. */
  sender: string;
  /** The sender's did. */
  senderId: string;
  /** The relay's per-channel sequence number. */
  seq: number;
  /** The body. */
  data: Uint8Array;
}
