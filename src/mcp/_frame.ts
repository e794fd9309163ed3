/**
 * The frames the MCP transport sends inside `mcp`-tagged MLS application
 * messages (the wire format is documented in `transport.ts`): a short clear
 * header for routing, then an HPKE box sealed to the one party the frame is
 * for, bound to the header, the channel and the sender's did.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { fromUtf8, utf8 } from "../channel/envelope.ts";
import { BOX_OVERHEAD, type BoxPrivateKey, type BoxPublicKey, openBox, sealBox } from "../seal.ts";
import type { JsonRpcMessage } from "./transport.ts";

/** The frame version this code speaks. Version 1 was an unsealed JSON frame. */
export const FRAME_VERSION = 2;
/** HPKE `info` of every frame box. */
export const FRAME_INFO: Uint8Array = utf8("skytale mcp frame v2");
/** The longest session id a frame carries, in bytes. */
const MAX_SID = 128;

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

/** A decoded frame: its header, the header's bytes and the box. */
export interface Frame extends FrameHeader {
  /** The encoded header (bound into the box). */
  head: Uint8Array;
  /** `enc || ciphertext`. */
  box: Uint8Array;
}

/** What a box holds. */
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

/**
 * Decodes a frame's clear part.
 *
 * @param data The body of an `mcp`-tagged message.
 * @returns The frame, or `undefined` if it is not a version 2 frame.
 */
export function decodeFrame(data: Uint8Array): Frame | undefined {
  if (data.length < 4 || data[0] !== FRAME_VERSION) return undefined;
  const dir = String.fromCharCode(data[1]!);
  if (dir !== "c" && dir !== "s") return undefined;
  const sidLen = data[2]!;
  const toAt = 3 + sidLen;
  if (sidLen === 0 || sidLen > MAX_SID || data.length <= toAt) return undefined;
  const toLen = data[toAt]!;
  const end = toAt + 1 + toLen;
  if (toLen === 0 || data.length < end + BOX_OVERHEAD) return undefined;
  try {
    return {
      dir,
      sid: fromUtf8(data.subarray(3, toAt)),
      to: fromUtf8(data.subarray(toAt + 1, end)),
      head: data.subarray(0, end),
      box: data.subarray(end),
    };
  } catch {
    return undefined;
  }
}

/**
 * The session id and direction of an old, unsealed version 1 frame (JSON),
 * so that a peer that was not updated can be told about, not silently ignored.
 *
 * @param data The body of an `mcp`-tagged message.
 * @returns Its direction and session id, or `undefined` if it is not one.
 */
export function legacyFrame(data: Uint8Array): { dir: string; sid: string } | undefined {
  if (data[0] !== 0x7b) return undefined; // "{"
  try {
    const o = JSON.parse(fromUtf8(data)) as Record<string, unknown>;
    if (o.v === 1 && typeof o.dir === "string" && typeof o.sid === "string") {
      return { dir: o.dir, sid: o.sid };
    }
  } catch {
    // not JSON
  }
  return undefined;
}

/** What a box is bound to: the header, the channel and the sender's did. */
function aadOf(head: Uint8Array, channel: string, from: string): Uint8Array {
  const tail = utf8(`\n${channel}\n${from}`);
  const out = new Uint8Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

function encodeBody(b: FrameBody): Uint8Array {
  return utf8(JSON.stringify({
    ...(b.ck ? { ck: b.ck.toHex() } : {}),
    ...(b.msg ? { msg: b.msg } : {}),
    ...(b.bye !== undefined ? { bye: b.bye } : {}),
  }));
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
    out.ck = Uint8Array.from(o.ck.match(/../g)!, (h) => parseInt(h, 16));
  }
  if (o.bye !== undefined) {
    if (typeof o.bye !== "string") return undefined;
    out.bye = o.bye;
  }
  if (o.msg !== undefined) {
    const m = o.msg as Record<string, unknown> | null;
    if (typeof m !== "object" || m === null || m.jsonrpc !== "2.0") return undefined;
    out.msg = m as unknown as JsonRpcMessage;
  } else if (out.bye === undefined) return undefined;
  return out;
}

/**
 * Seals a frame to its recipient.
 *
 * @param header Direction, session id and the recipient's did.
 * @param body What the frame carries.
 * @param to The recipient's box key (from its did, or the client's session key).
 * @param channel The channel it is sent on.
 * @param from The sender's own did.
 * @returns The bytes to send under tag `mcp`.
 */
export async function sealFrame(
  header: FrameHeader,
  body: FrameBody,
  to: BoxPublicKey,
  channel: string,
  from: string,
): Promise<Uint8Array> {
  const head = encodeHeader(header);
  const box = await sealBox(to, encodeBody(body), FRAME_INFO, aadOf(head, channel, from));
  const out = new Uint8Array(head.length + box.length);
  out.set(head);
  out.set(box, head.length);
  return out;
}

/**
 * Opens a frame's box.
 *
 * @param frame The decoded frame.
 * @param open Opens a box (a private key, or the manager's `openSealed`).
 * @param channel The channel it came on.
 * @param from The sender's did, as MLS proved it (never a field of the frame).
 * @returns The body, or `undefined` if the box does not open or holds no valid body.
 */
export async function openFrame(
  frame: Frame,
  open:
    | BoxPrivateKey
    | ((box: Uint8Array, info: Uint8Array, aad: Uint8Array) => Promise<Uint8Array>),
  channel: string,
  from: string,
): Promise<FrameBody | undefined> {
  const aad = aadOf(frame.head, channel, from);
  let plain: Uint8Array;
  try {
    plain = typeof open === "function"
      ? await open(frame.box, FRAME_INFO, aad)
      : await openBox(open, frame.box, FRAME_INFO, aad);
  } catch {
    return undefined;
  }
  return decodeBody(plain);
}
