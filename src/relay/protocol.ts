/**
 * The relay wire protocol: binary, versioned frames and the one codec both
 * ends use. Every frame starts with the protocol version (1) and a frame type
 * byte; request frames then carry a u32 request id that the answer echoes.
 * Integers are big-endian; strings are a u16 byte length plus UTF-8; byte
 * fields are a u32 length plus the bytes; ids are 16 raw bytes. The layout of
 * every frame is in `docs/PROTOCOL.md`.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { Reader, Writer } from "./_wire.ts";

/** The protocol version written as the first byte of every frame. */
export const PROTOCOL_VERSION = 1;

/** The default largest frame a relay accepts: a 1 MiB message plus MLS and framing overhead. */
export const DEFAULT_MAX_FRAME_BYTES: number = 1024 * 1024 + 64 * 1024;

/** The largest frame the codec will ever decode, whatever the configured limit. */
export const ABSOLUTE_MAX_FRAME_BYTES: number = 64 * 1024 * 1024;

/** The length of a publish or mailbox id, in bytes. */
export const ID_BYTES = 16;

/** The largest channel name or mailbox address, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;

/**
 * What a `prove` signature covers, before the connection's nonce: a
 * signature made for this purpose can serve no other.
 */
export const PROVE_CONTEXT: Uint8Array = new TextEncoder().encode("skytale relay membership v1\0");

/**
 * The length of the take key that ends `mailboxTake` and `mailboxAck` frames.
 * The field is absent in frames of clients from before mailbox ownership; the
 * codec still reads those (the relay refuses them with `auth`).
 */
export const TAKE_KEY_BYTES = 32;

/** The most item ids one `mailboxAck` frame may carry. */
export const MAX_ACK_IDS = 1024;

/** Frame type bytes. */
export const FrameType = {
  hello: 0x01,
  helloOk: 0x02,
  create: 0x03,
  created: 0x04,
  subscribe: 0x05,
  subscribed: 0x06,
  unsubscribe: 0x07,
  ok: 0x08,
  publish: 0x09,
  ack: 0x0a,
  nack: 0x0b,
  deliver: 0x0c,
  mailboxPut: 0x0d,
  mailboxTake: 0x0e,
  mailboxItems: 0x0f,
  ping: 0x10,
  pong: 0x11,
  error: 0x12,
  mailboxAck: 0x13,
  prove: 0x14,
} as const;

/** The name of a frame type. */
export type FrameType = keyof typeof FrameType;

/** Kinds of log entries, as names. */
export const EntryKind = {
  /** An MLS application message. */
  application: "application",
  /** An MLS commit; ordered against the channel epoch. */
  commit: "commit",
  /** An MLS proposal. */
  proposal: "proposal",
  /**
   * The creator's GroupInfo at epoch 0 (seq 1 of a channel created with one):
   * the public state the relay validates commits against. Never trimmed.
   */
  genesis: "genesis",
} as const;

/** The kind of a log entry. */
export type EntryKind = typeof EntryKind[keyof typeof EntryKind];

const KIND_TO_BYTE: Record<EntryKind, number> = {
  application: 0,
  commit: 1,
  proposal: 2,
  genesis: 3,
};
const BYTE_TO_KIND: readonly EntryKind[] = ["application", "commit", "proposal", "genesis"];

/** Where a subscription starts: a sequence number, or the first entry of an epoch. */
export type SubscribeFrom = { seq: number } | { epoch: number };

/** One mailbox item on the wire. */
export interface MailboxItem {
  /** The 16-byte id the sender chose. */
  id: Uint8Array;
  /** The opaque blob. */
  payload: Uint8Array;
}

/** Every frame, as a discriminated union on `type`. */
export type Frame =
  | { type: "hello"; reqId: number; token?: string }
  | {
    type: "helloOk";
    reqId: number;
    maxFrameBytes: number;
    /** This connection's challenge for `prove` (absent from relays that do not check members). */
    nonce?: Uint8Array | undefined;
    /**
     * The relay's answer to a challenge in the hello token: the embedded local
     * relay's proof that it knows the user's local secret (absent elsewhere).
     */
    proof?: Uint8Array | undefined;
  }
  | {
    type: "prove";
    reqId: number;
    /** A raw Ed25519 public key: the identity key of a member. */
    publicKey: Uint8Array;
    /** Its signature over `PROVE_CONTEXT` followed by the connection's nonce. */
    signature: Uint8Array;
  }
  | {
    type: "create";
    reqId: number;
    channel: string;
    /** The creator's GroupInfo (MLSMessage) at epoch 0; empty for a channel the relay does not validate. */
    genesis?: Uint8Array | undefined;
  }
  | { type: "created"; reqId: number; created: boolean }
  | { type: "subscribe"; reqId: number; channel: string; from: SubscribeFrom }
  | { type: "subscribed"; reqId: number; fromSeq: number; head: number; epoch: number }
  | { type: "unsubscribe"; reqId: number; channel: string }
  | { type: "ok"; reqId: number }
  | {
    type: "publish";
    reqId: number;
    channel: string;
    id: Uint8Array;
    kind: EntryKind;
    epoch: number;
    payload: Uint8Array;
  }
  | { type: "ack"; reqId: number; seq: number; epoch: number }
  | { type: "nack"; reqId: number; code: string; epoch: number }
  | {
    type: "deliver";
    channel: string;
    seq: number;
    epoch: number;
    kind: EntryKind;
    time: number;
    id: Uint8Array;
    payload: Uint8Array;
  }
  | {
    type: "mailboxPut";
    reqId: number;
    address: string;
    id: Uint8Array;
    ttl: number;
    payload: Uint8Array;
  }
  | { type: "mailboxTake"; reqId: number; address: string; key?: Uint8Array }
  | { type: "mailboxItems"; reqId: number; items: MailboxItem[] }
  | { type: "mailboxAck"; reqId: number; address: string; ids: Uint8Array[]; key?: Uint8Array }
  | { type: "ping"; reqId: number }
  | { type: "pong"; reqId: number }
  | { type: "error"; reqId: number; code: string; message: string };

/** The frame of one type. */
export type FrameOf<T extends FrameType> = Extract<Frame, { type: T }>;

/**
 * How one field is written: its kind fixes the bytes, `name` is the property
 * of the frame object, `what` names it in errors.
 *
 * - `u32`, `u64`: big-endian integers (a u64 must be a safe integer).
 * - `str`: u16 length + UTF-8. `bytes`: u32 length + bytes. `id`: 16 raw bytes.
 * - `kind`: an {@linkcode EntryKind} as one byte. `flag`: a boolean as one byte, 0 or 1.
 * - `optStr`: a u8 presence flag, then the string when it is 1 (hello's token).
 * - `from`: a u8 mode (0 seq, 1 epoch), then the u64 ({@linkcode SubscribeFrom}).
 * - `items`: a u32 count of (`id`, `bytes`) pairs. `ids`: a u32 count of `id`s.
 * - `tail`: optional trailing `bytes`, present when bytes remain; written when it or a
 *   later tail field is there (as empty bytes if it is not). `omitEmpty`: an empty value
 *   is not written; `emptyIsAbsent`: an empty value read is no value.
 * - `tailKey`: an optional trailing take key of {@linkcode TAKE_KEY_BYTES}, the last field.
 */
interface _Field {
  readonly name: string;
  readonly kind: _Kind;
  readonly what: string;
  readonly omitEmpty?: true;
  readonly emptyIsAbsent?: true;
}

/** One frame type's layout: after version and type byte, the request id (unless `noReqId`), then `fields`. */
interface _Layout {
  readonly noReqId?: true;
  readonly fields: readonly _Field[];
}

/** Field kinds, described at {@linkcode _Field}: small integers, so the codec's switches are jump tables. */
const K = {
  u32: 0,
  u64: 1,
  str: 2,
  bytes: 3,
  id: 4,
  kind: 5,
  flag: 6,
  optStr: 7,
  from: 8,
  items: 9,
  ids: 10,
  tail: 11,
  tailKey: 12,
} as const;
type _Kind = typeof K[keyof typeof K];

const _f = (
  name: string,
  kind: _Kind,
  what = name,
  opts: Pick<_Field, "omitEmpty" | "emptyIsAbsent"> = {},
): _Field => ({ name, kind, what, ...opts });

/**
 * Every frame's fields, in wire order: the one description both
 * {@linkcode encodeFrame} and {@linkcode decodeFrame} follow (and `docs/PROTOCOL.md` spells out).
 */
const LAYOUTS: { readonly [T in FrameType]: _Layout } = {
  hello: { fields: [_f("token", K.optStr)] },
  helloOk: {
    fields: [
      _f("maxFrameBytes", K.u32, "max frame bytes"),
      // The nonce is there for relays that check members; the proof only from the local relay.
      _f("nonce", K.tail, "nonce", { emptyIsAbsent: true }),
      _f("proof", K.tail),
    ],
  },
  prove: { fields: [_f("publicKey", K.bytes, "public key"), _f("signature", K.bytes)] },
  // The GroupInfo is optional on the wire: a frame without it is a version-1 create.
  create: {
    fields: [_f("channel", K.str), _f("genesis", K.tail, "genesis", { omitEmpty: true })],
  },
  created: { fields: [_f("created", K.flag, "created flag")] },
  subscribe: { fields: [_f("channel", K.str), _f("from", K.from)] },
  subscribed: {
    fields: [_f("fromSeq", K.u64, "from seq"), _f("head", K.u64), _f("epoch", K.u64)],
  },
  unsubscribe: { fields: [_f("channel", K.str)] },
  ok: { fields: [] },
  publish: {
    fields: [
      _f("channel", K.str),
      _f("id", K.id, "publish id"),
      _f("kind", K.kind),
      _f("epoch", K.u64),
      _f("payload", K.bytes),
    ],
  },
  ack: { fields: [_f("seq", K.u64), _f("epoch", K.u64)] },
  nack: { fields: [_f("code", K.str), _f("epoch", K.u64)] },
  deliver: {
    noReqId: true,
    fields: [
      _f("channel", K.str),
      _f("seq", K.u64),
      _f("epoch", K.u64),
      _f("kind", K.kind),
      _f("time", K.u64),
      _f("id", K.id, "entry id"),
      _f("payload", K.bytes),
    ],
  },
  mailboxPut: {
    fields: [
      _f("address", K.str),
      _f("id", K.id, "mailbox id"),
      _f("ttl", K.u32),
      _f("payload", K.bytes),
    ],
  },
  // The take key is absent from frames of clients from before mailbox ownership.
  mailboxTake: { fields: [_f("address", K.str), _f("key", K.tailKey, "take key")] },
  mailboxItems: { fields: [_f("items", K.items, "item")] },
  mailboxAck: {
    fields: [_f("address", K.str), _f("ids", K.ids, "id"), _f("key", K.tailKey, "take key")],
  },
  ping: { fields: [] },
  pong: { fields: [] },
  error: { fields: [_f("code", K.str), _f("message", K.str)] },
};

/** A frame type's name, byte and layout, for the loops below. */
interface _Spec extends _Layout {
  readonly type: FrameType;
  readonly byte: number;
  /** The index of the first optional trailing field (`fields.length` when there is none). */
  readonly tailStart: number;
  /** The fields whose size varies, for the writer's first allocation. */
  readonly sized: readonly _Field[];
}

const _isTail = (f: _Field) => f.kind === K.tail || f.kind === K.tailKey;
const _isSized = (f: _Field) =>
  f.kind === K.str || f.kind === K.bytes || f.kind === K.tail || f.kind === K.ids ||
  f.kind === K.items;

function _spec(type: FrameType): _Spec {
  const layout = LAYOUTS[type];
  const tail = layout.fields.findIndex(_isTail);
  return {
    type,
    byte: FrameType[type],
    ...layout,
    tailStart: tail === -1 ? layout.fields.length : tail,
    sized: layout.fields.filter(_isSized),
  };
}

const SPECS = Object.fromEntries(
  (Object.keys(FrameType) as FrameType[]).map((type) => [type, _spec(type)]),
) as unknown as { readonly [T in FrameType]: _Spec };
const SPEC_BY_BYTE: readonly (_Spec | undefined)[] = Array.from(
  { length: 256 },
  (_, b) => Object.values(SPECS).find((s) => s.byte === b),
);
const EMPTY = new Uint8Array(0);

/** Bytes beyond the fixed 64 that a frame will take, so the writer rarely grows. */
function _sizeHint(sized: readonly _Field[], f: Record<string, unknown>): number {
  let n = 64;
  for (const field of sized) {
    const v = f[field.name];
    if (v === undefined) continue;
    if (field.kind === K.str) n += (v as string).length * 3;
    else if (field.kind === K.ids) n += (v as Uint8Array[]).length * ID_BYTES;
    else if (field.kind !== K.items) n += (v as Uint8Array).length;
    else {
      for (const i of v as MailboxItem[]) n += i.payload.length + ID_BYTES + 4;
    }
  }
  return n;
}

/** The index past the last tail field that must be written (earlier absent ones go as empty). */
function _tailEnd(spec: _Spec, f: Record<string, unknown>): number {
  const { fields, tailStart } = spec;
  for (let i = fields.length - 1; i >= tailStart; i--) {
    const field = fields[i]!;
    const v = f[field.name] as Uint8Array | undefined;
    if (v !== undefined && !(field.omitEmpty && v.length === 0)) return i + 1;
  }
  return tailStart;
}

function _writeField(w: Writer, field: _Field, v: unknown): void {
  const { what } = field;
  switch (field.kind) {
    case K.u32:
      return w.u32(v as number, what);
    case K.u64:
      return w.u64(v as number, what);
    case K.str:
      return w.str(v as string, what);
    case K.bytes:
      return w.bytes(v as Uint8Array, what);
    case K.id:
      return w.fixed(v as Uint8Array, ID_BYTES, what);
    case K.kind:
      return w.u8(KIND_TO_BYTE[v as EntryKind]);
    case K.flag:
      return w.u8(v ? 1 : 0);
    case K.optStr:
      if (v === undefined) return w.u8(0);
      w.u8(1);
      return w.str(v as string, what);
    case K.from: {
      const from = v as SubscribeFrom;
      if ("seq" in from) {
        w.u8(0);
        return w.u64(from.seq, "from seq");
      }
      w.u8(1);
      return w.u64(from.epoch, "from epoch");
    }
    case K.items:
      w.u32((v as MailboxItem[]).length, `${what} count`);
      for (const item of v as MailboxItem[]) {
        w.fixed(item.id, ID_BYTES, "mailbox id");
        w.bytes(item.payload, "payload");
      }
      return;
    case K.ids:
      w.u32((v as Uint8Array[]).length, `${what} count`);
      for (const id of v as Uint8Array[]) w.fixed(id, ID_BYTES, "mailbox id");
      return;
    case K.tail:
      return w.bytes((v as Uint8Array | undefined) ?? EMPTY, what);
    case K.tailKey:
      return w.fixed(v as Uint8Array, TAKE_KEY_BYTES, what);
  }
}

/** Reads one field: its value, or `undefined` for an absent optional one. */
function _readField(r: Reader, field: _Field): unknown {
  const what = field.what;
  switch (field.kind) {
    case K.u32:
      return r.u32(what);
    case K.u64:
      return r.u64(what);
    case K.str:
      return r.str(what);
    case K.bytes:
      return r.bytes(what);
    case K.id:
      return r.fixed(ID_BYTES, what);
    case K.kind: {
      const b = r.u8(what);
      const k = BYTE_TO_KIND[b];
      if (k === undefined) {
        throw new ProtocolError(`Bad "${r.frame}" frame: unknown entry kind ${b}`);
      }
      return k;
    }
    case K.flag: {
      const b = r.u8(what);
      if (b > 1) throw new ProtocolError(`Bad "${r.frame}" frame: flag ${b}`);
      return b === 1;
    }
    case K.optStr: {
      const b = r.u8(`${what} flag`);
      if (b > 1) throw new ProtocolError(`Bad "${r.frame}" frame: ${what} flag ${b}`);
      return b === 1 ? r.str(what) : undefined;
    }
    case K.from: {
      const mode = r.u8("from mode");
      if (mode > 1) throw new ProtocolError(`Bad "${r.frame}" frame: from mode ${mode}`);
      const v = r.u64("from value");
      return mode === 0 ? { seq: v } : { epoch: v };
    }
    case K.items: {
      const n = r.u32(`${what} count`);
      // Each item takes at least 20 bytes, so a lying count fails fast instead of looping.
      r.need(n * (ID_BYTES + 4), "items");
      const items: MailboxItem[] = [];
      for (let i = 0; i < n; i++) {
        items.push({ id: r.fixed(ID_BYTES, "mailbox id"), payload: r.bytes("payload") });
      }
      return items;
    }
    case K.ids: {
      const n = r.u32(`${what} count`);
      // A lying count fails here, before anything is allocated for it.
      r.need(n * ID_BYTES, "ids");
      const ids: Uint8Array[] = [];
      for (let i = 0; i < n; i++) ids.push(r.fixed(ID_BYTES, "mailbox id"));
      return ids;
    }
    case K.tail: {
      if (r.left() === 0) return undefined;
      const b = r.bytes(what);
      return field.emptyIsAbsent && b.length === 0 ? undefined : b;
    }
    case K.tailKey:
      return r.left() > 0 ? r.fixed(TAKE_KEY_BYTES, what) : undefined;
  }
}

/**
 * Encodes a frame.
 *
 * @param f The frame.
 * @returns Its bytes (a fresh view; the caller may keep it).
 * @throws {ProtocolError} `protocol` if a field cannot be encoded (out of range, wrong id length).
 */
export function encodeFrame(f: Frame): Uint8Array<ArrayBuffer> {
  const spec = SPECS[f.type];
  if (spec === undefined) throw new ProtocolError(`Cannot encode frame type "${f.type}"`);
  const v = f as unknown as Record<string, unknown>;
  const fields = spec.fields;
  const w = new Writer(_sizeHint(spec.sized, v));
  w.u8(PROTOCOL_VERSION);
  w.u8(spec.byte);
  if (!spec.noReqId) w.u32(v.reqId as number, "request id");
  const end = spec.tailStart === fields.length ? fields.length : _tailEnd(spec, v);
  for (let i = 0; i < end; i++) _writeField(w, fields[i]!, v[fields[i]!.name]);
  return w.done();
}

/**
 * Decodes one frame. Byte fields are views into `bytes` (no copy).
 *
 * @param bytes The frame's bytes, exactly one frame.
 * @param maxBytes The largest frame accepted.
 * @returns The frame.
 * @throws {ProtocolError} `protocol` if the bytes are empty, oversized, truncated, of another
 *   version or type, larger than `maxBytes`, or carry trailing or malformed fields.
 */
export function decodeFrame(bytes: Uint8Array, maxBytes: number = DEFAULT_MAX_FRAME_BYTES): Frame {
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError(`Frame must be binary, got ${typeof bytes}`);
  }
  if (bytes.length > Math.min(maxBytes, ABSOLUTE_MAX_FRAME_BYTES)) {
    throw new ProtocolError(
      `Frame of ${bytes.length} bytes is over the limit of ${maxBytes} bytes`,
    );
  }
  if (bytes.length < 2) {
    throw new ProtocolError(`Frame of ${bytes.length} bytes is too short for a header`);
  }
  if (bytes[0] !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `Unsupported protocol version ${bytes[0]}: this end speaks version ${PROTOCOL_VERSION}`,
    );
  }
  const spec = SPEC_BY_BYTE[bytes[1]!];
  if (spec === undefined) {
    throw new ProtocolError(`Unknown frame type ${bytes[1]}`);
  }
  const r = new Reader(bytes, spec.type);
  r.pos = 2;
  const f: Record<string, unknown> = spec.noReqId
    ? { type: spec.type }
    : { type: spec.type, reqId: r.u32("request id") };
  for (const field of spec.fields) {
    const v = _readField(r, field);
    if (v !== undefined) f[field.name] = v;
  }
  r.end();
  return f as unknown as Frame;
}

/**
 * Reads the request id of a frame without decoding the rest, so a relay can
 * answer a malformed request with an error that names it.
 *
 * @param bytes The raw frame.
 * @returns The request id, or 0 when the header is unreadable or the type has none.
 */
export function peekRequestId(bytes: Uint8Array): number {
  if (bytes.length < 6 || bytes[0] !== PROTOCOL_VERSION) return 0;
  const spec = SPEC_BY_BYTE[bytes[1]!];
  if (spec === undefined || spec.noReqId) return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(2);
}
