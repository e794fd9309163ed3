/**
 * The frames the MCP transport sends inside `mcp`-tagged MLS application
 * messages (the wire format is documented in `transport.ts`): a short clear
 * header for routing, a key box (the sender's session key, HPKE-sealed to the
 * one party the frame is for), a counter, then the body encrypted with that
 * session key; everything bound to the header, the channel and the sender's
 * did.
 *
 * A sender makes one {@linkcode FrameSealer} per session and recipient key:
 * one HPKE seal for the session, then one AES-GCM pass per frame. A receiver
 * keeps the keys it opened in {@linkcode FrameKeys}: one HPKE open per
 * session, then one AES-GCM pass per frame.
 *
 * @module
 */
import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { fromUtf8, utf8 } from "../channel/envelope.ts";
import {
  BOX_OVERHEAD,
  type BoxPrivateKey,
  type BoxPublicKey,
  newSessionKey,
  NONCE_BYTES,
  openBox,
  openWithKey,
  sealBox,
  sealWithKey,
  SESSION_KEY_BYTES,
  TAG_BYTES,
} from "../seal.ts";
import type { JsonRpcMessage } from "./transport_contract.ts";

/** The frame version this code speaks. Version 1 was unsealed JSON; version 2 one HPKE box per frame. */
export const FRAME_VERSION = 3;
/** HPKE `info` of the key box. */
export const FRAME_KEY_INFO: Uint8Array = utf8("skytale mcp frame v3 key");
/** Bytes of the key box: `enc`, the sealed session key and its tag. */
export const KEY_BOX_BYTES: number = BOX_OVERHEAD + SESSION_KEY_BYTES;
/** Bytes of the frame counter (big-endian). */
const COUNTER_BYTES = 8;
/**
 * Frames one session key seals at most; the sender then makes a new key (AES-GCM
 * keys are good for far more, and no session comes near it).
 */
export const MAX_FRAMES_PER_KEY = 2 ** 32;
/** The longest session id a frame carries, in bytes. */
const MAX_SID = 128;
/** Session keys a {@linkcode FrameKeys} keeps (the least recently used go first). */
const MAX_KEYS = 1024;

/** Which way a frame goes: `c` client to server, `s` server to client. */
export type FrameDir = "c" | "s";

/** The clear part of a frame. */
export interface FrameHeader {
  /** `c` from a client to a server, `s` back. */
  dir: FrameDir;
  /** The client transport's session id. */
  sid: string;
  /** The recipient's did. */
  to: string;
}

/** A decoded frame: its header, the header's bytes, the key box, the counter, the ciphertext. */
export interface Frame extends FrameHeader {
  /** The encoded header (bound into the key box). */
  head: Uint8Array;
  /** `enc || sealed session key`. */
  keyBox: Uint8Array;
  /** The frame's number under its session key. */
  counter: number;
  /** Everything before the ciphertext (bound into it). */
  prefix: Uint8Array;
  /** The body, encrypted with the session key. */
  ciphertext: Uint8Array;
}

/** What a frame's body holds. */
export interface FrameBody {
  /** The client's session key (raw X25519), in every client frame: answers are sealed to it. */
  ck?: Uint8Array;
  /** A JSON-RPC message. */
  msg?: JsonRpcMessage;
  /** Ends the session, with a reason. */
  bye?: string;
}

function encodeHeader(h: FrameHeader): Uint8Array {
  const sid = utf8(h.sid);
  const to = utf8(h.to);
  if (sid.length === 0 || sid.length > MAX_SID || to.length === 0 || to.length > 255) {
    throw new ValidationError("invalid_argument", "MCP frame session id or recipient is too long");
  }
  const out = new Uint8Array(4 + sid.length + to.length);
  out[0] = FRAME_VERSION;
  out[1] = h.dir.charCodeAt(0);
  out[2] = sid.length;
  out.set(sid, 3);
  out[3 + sid.length] = to.length;
  out.set(to, 4 + sid.length);
  return out;
}

/** The header fields of a version 2 or 3 frame (same layout), without checking the version. */
function decodeHead(data: Uint8Array): (FrameHeader & { end: number }) | undefined {
  if (data.length < 4) return undefined;
  const dir = String.fromCharCode(data[1]!);
  if (dir !== "c" && dir !== "s") return undefined;
  const sidLen = data[2]!;
  const toAt = 3 + sidLen;
  if (sidLen === 0 || sidLen > MAX_SID || data.length <= toAt) return undefined;
  const toLen = data[toAt]!;
  const end = toAt + 1 + toLen;
  if (toLen === 0 || data.length < end) return undefined;
  try {
    return {
      dir,
      sid: fromUtf8(data.subarray(3, toAt)),
      to: fromUtf8(data.subarray(toAt + 1, end)),
      end,
    };
  } catch {
    return undefined;
  }
}

/**
 * Decodes a frame's clear part.
 *
 * @param data The body of an `mcp`-tagged message.
 * @returns The frame, or `undefined` if it is not a version 3 frame.
 */
export function decodeFrame(data: Uint8Array): Frame | undefined {
  if (data[0] !== FRAME_VERSION) return undefined;
  const h = decodeHead(data);
  if (!h) return undefined;
  const at = h.end + KEY_BOX_BYTES;
  const body = at + COUNTER_BYTES;
  if (data.length < body + TAG_BYTES) return undefined;
  const view = new DataView(data.buffer, data.byteOffset + at, COUNTER_BYTES);
  if (view.getUint32(0) !== 0) return undefined; // beyond MAX_FRAMES_PER_KEY
  return {
    dir: h.dir,
    sid: h.sid,
    to: h.to,
    head: data.subarray(0, h.end),
    keyBox: data.subarray(h.end, at),
    counter: view.getUint32(4),
    prefix: data.subarray(0, body),
    ciphertext: data.subarray(body),
  };
}

/**
 * The version, direction and session id of a frame of an older version (1:
 * unsealed JSON; 2: one HPKE box per frame), so that a peer that was not
 * updated can be told about, not silently ignored.
 *
 * @param data The body of an `mcp`-tagged message.
 * @returns Its version, direction and session id, or `undefined` if it is not one.
 */
export function legacyFrame(
  data: Uint8Array,
): { version: number; dir: string; sid: string } | undefined {
  if (data[0] === 2) {
    const h = decodeHead(data);
    return h && { version: 2, dir: h.dir, sid: h.sid };
  }
  if (data[0] !== 0x7b) return undefined; // "{"
  try {
    const o = JSON.parse(fromUtf8(data)) as Record<string, unknown>;
    if (o.v === 1 && typeof o.dir === "string" && typeof o.sid === "string") {
      return { version: 1, dir: o.dir, sid: o.sid };
    }
  } catch {
    // not JSON
  }
  return undefined;
}

/** `a ‖ "\n" channel "\n" from`: what a frame's parts are bound to. */
function bound(a: Uint8Array, tail: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + tail.length);
  out.set(a);
  out.set(tail, a.length);
  return out;
}

function tailOf(channel: string, from: string): Uint8Array {
  return utf8(`\n${channel}\n${from}`);
}

function nonceOf(counter: number): Uint8Array {
  const nonce = new Uint8Array(NONCE_BYTES);
  new DataView(nonce.buffer).setUint32(NONCE_BYTES - 4, counter);
  return nonce;
}

function encodeBody(b: FrameBody): Uint8Array {
  return utf8(JSON.stringify({
    ...(b.ck ? { ck: b.ck.toHex() } : {}),
    ...(b.msg ? { msg: b.msg } : {}),
    ...(b.bye !== undefined ? { bye: b.bye } : {}),
  }));
}

const RPC_ID = z.union([z.string(), z.number().int()]);
const RPC_PARAMS = z.record(z.string(), z.unknown()).optional();
/** A JSON-RPC 2.0 request, notification, result or error (the MCP SDK checks the rest). */
const REQUEST = z.looseObject({
  jsonrpc: z.literal("2.0"),
  id: RPC_ID,
  method: z.string(),
  params: RPC_PARAMS,
});
const NOTIFICATION = z.looseObject({
  jsonrpc: z.literal("2.0"),
  method: z.string(),
  params: RPC_PARAMS,
});
const RESULT = z.looseObject({
  jsonrpc: z.literal("2.0"),
  id: RPC_ID,
  result: z.record(z.string(), z.unknown()),
});
const ERROR = z.looseObject({
  jsonrpc: z.literal("2.0"),
  id: RPC_ID.nullable(),
  error: z.looseObject({
    code: z.number().int(),
    message: z.string(),
    data: z.unknown().optional(),
  }),
});

/**
 * The one JSON-RPC shape a message can be, chosen by its keys (a `method`
 * with an `id` is a request, without one a notification; else a `result` or an
 * `error`), so that each message is parsed by one schema rather than tried
 * against a union whose failed members each build their issues (half the
 * parse time of a result: 0.7 against 1.3 µs on Deno, 1.1 against 3.6 on Bun). A request's `id` must be valid; `"id": null` makes no notification.
 */
function jsonRpcSchema(m: unknown): z.ZodType | undefined {
  if (typeof m !== "object" || m === null || Array.isArray(m)) return undefined;
  if ("method" in m) return "id" in m ? REQUEST : NOTIFICATION;
  if ("result" in m) return RESULT;
  if ("error" in m) return ERROR;
  return undefined;
}

function decodeBody(data: Uint8Array): FrameBody | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(fromUtf8(data)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof o !== "object" || o === null) return undefined;
  const out: FrameBody = {};
  if (o.ck !== undefined) {
    if (typeof o.ck !== "string" || !/^[0-9a-f]{64}$/.test(o.ck)) return undefined;
    out.ck = Uint8Array.fromHex(o.ck);
  }
  if (o.bye !== undefined) {
    if (typeof o.bye !== "string") return undefined;
    out.bye = o.bye;
  }
  if (o.msg !== undefined) {
    // A peer's frame is untrusted input: only a JSON-RPC 2.0 message goes on to the MCP layer.
    const m = jsonRpcSchema(o.msg)?.safeParse(o.msg);
    if (!m?.success) return undefined;
    out.msg = m.data as JsonRpcMessage;
  } else if (out.bye === undefined) return undefined;
  return out;
}

/**
 * Seals the frames of one session to one recipient key: a random session key,
 * sealed once to the recipient (the key box, carried in every frame so that
 * the recipient can start from any frame, e.g. after it restarted), then each
 * frame encrypted with it under the next counter.
 *
 * Nonces never repeat: the key lives only in this object's memory (never
 * stored), so a restarted or new session has a new key, and the counter
 * grows by one per frame, taken synchronously in call order.
 */
export class FrameSealer {
  #prefix: Uint8Array;
  #key: Uint8Array;
  #tail: Uint8Array;
  #next = 0;

  private constructor(prefix: Uint8Array, key: Uint8Array, tail: Uint8Array) {
    this.#prefix = prefix;
    this.#key = key;
    this.#tail = tail;
  }

  /**
   * Makes a session key and seals it to the recipient (one HPKE seal).
   *
   * @param header Direction, session id and the recipient's did.
   * @param to The recipient's box key (from its did, or the client's session key).
   * @param channel The channel the frames are sent on.
   * @param from The sender's own did.
   * @returns The sealer.
   */
  static async create(
    header: FrameHeader,
    to: Uint8Array | BoxPublicKey,
    channel: string,
    from: string,
  ): Promise<FrameSealer> {
    const head = encodeHeader(header);
    const tail = tailOf(channel, from);
    const key = newSessionKey();
    const keyBox = await sealBox(to, key, FRAME_KEY_INFO, bound(head, tail));
    const prefix = new Uint8Array(head.length + keyBox.length + COUNTER_BYTES);
    prefix.set(head);
    prefix.set(keyBox, head.length);
    return new FrameSealer(prefix, key, tail);
  }

  /** Whether this key has sealed its {@linkcode MAX_FRAMES_PER_KEY} frames. */
  get spent(): boolean {
    return this.#next >= MAX_FRAMES_PER_KEY;
  }

  /**
   * Seals one frame; its counter is taken at once, so frames sealed in call
   * order carry growing counters.
   *
   * @param body What the frame carries.
   * @returns The bytes to send under tag `mcp`.
   * @throws {ValidationError} `invalid_argument` once {@linkcode spent}.
   */
  seal(body: FrameBody): Promise<Uint8Array> {
    if (this.spent) {
      return Promise.reject(new ValidationError("invalid_argument", "This MCP frame key is spent"));
    }
    const counter = this.#next++;
    const prefix = this.#prefix.slice();
    new DataView(prefix.buffer).setUint32(prefix.length - 4, counter);
    const nonce = nonceOf(counter);
    return sealWithKey(this.#key, nonce, encodeBody(body), bound(prefix, this.#tail)).then((ct) => {
      const out = new Uint8Array(prefix.length + ct.length);
      out.set(prefix);
      out.set(ct, prefix.length);
      return out;
    });
  }
}

/** Opens a key box: with a private key, or the manager's `openSealed`. */
export type KeyBoxOpener =
  | BoxPrivateKey
  | ((box: Uint8Array, info: Uint8Array, aad: Uint8Array) => Promise<Uint8Array>);

interface Opened {
  keyBox: Uint8Array;
  key: Promise<Uint8Array | undefined>;
  /** The highest counter accepted under this key (-1: none yet). */
  last: number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The session keys a receiver opened, per channel, sender did, direction and
 * session id: a key box is opened once (one HPKE open), then each frame costs one
 * AES-GCM pass. A frame whose counter is not above the last one accepted under
 * its key is refused (a replay). Frames are to be opened one at a time, in the
 * order they arrived.
 */
export class FrameKeys {
  #open: KeyBoxOpener;
  #keys = new Map<string, Opened>();

  /**
   * Creates an empty key cache.
   *
   * @param open Opens key boxes sealed to this party.
   */
  constructor(open: KeyBoxOpener) {
    this.#open = open;
  }

  /**
   * Opens a frame.
   *
   * @param frame The decoded frame.
   * @param channel The channel it came on.
   * @param from The sender's did, as MLS proved it (never a field of the frame).
   * @returns The body, or `undefined` if the frame does not open, holds no
   *   valid body, or replays a counter.
   */
  async open(frame: Frame, channel: string, from: string): Promise<FrameBody | undefined> {
    const tail = tailOf(channel, from);
    const id = `${channel}\n${from}\n${frame.dir}\n${frame.sid}`;
    let o = this.#keys.get(id);
    if (o && sameBytes(o.keyBox, frame.keyBox)) {
      this.#keys.delete(id); // re-inserted below: most recently used last
    } else {
      o = { keyBox: frame.keyBox.slice(), key: this.#openKey(frame, tail), last: -1 };
    }
    this.#keys.set(id, o);
    if (this.#keys.size > MAX_KEYS) this.#keys.delete(this.#keys.keys().next().value!);
    const key = await o.key;
    if (!key) {
      // Not cached: a box that does not open is no reason to refuse the next one.
      if (this.#keys.get(id) === o) this.#keys.delete(id);
      return undefined;
    }
    if (frame.counter <= o.last) return undefined;
    let plain: Uint8Array;
    try {
      plain = await openWithKey(
        key,
        nonceOf(frame.counter),
        frame.ciphertext,
        bound(frame.prefix, tail),
      );
    } catch {
      return undefined;
    }
    o.last = frame.counter;
    return decodeBody(plain);
  }

  /**
   * Forgets the key of a session (e.g. once it ended).
   *
   * @param channel The channel.
   * @param from The sender's did.
   * @param dir The direction of its frames.
   * @param sid The session id.
   */
  forget(channel: string, from: string, dir: FrameDir, sid: string): void {
    this.#keys.delete(`${channel}\n${from}\n${dir}\n${sid}`);
  }

  async #openKey(frame: Frame, tail: Uint8Array): Promise<Uint8Array | undefined> {
    const aad = bound(frame.head, tail);
    try {
      const key = typeof this.#open === "function"
        ? await this.#open(frame.keyBox, FRAME_KEY_INFO, aad)
        : await openBox(this.#open, frame.keyBox, FRAME_KEY_INFO, aad);
      return key.length === SESSION_KEY_BYTES ? key : undefined;
    } catch {
      return undefined;
    }
  }
}
