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
const TYPE_NAMES: ReadonlyMap<number, FrameType> = new Map(
  (Object.entries(FrameType) as [FrameType, number][]).map(([k, v]) => [v, k]),
);

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

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const TWO_32 = 0x1_0000_0000;

class _Writer {
  buf: Uint8Array<ArrayBuffer>;
  view: DataView;
  pos = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.ensure(1);
    this.view.setUint8(this.pos, v);
    this.pos += 1;
  }
  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }
  u32(v: number, what: string): void {
    if (!Number.isInteger(v) || v < 0 || v >= TWO_32) {
      throw new ProtocolError(`Cannot encode ${what} ${v}: not a u32`);
    }
    this.ensure(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }
  u64(v: number, what: string): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new ProtocolError(`Cannot encode ${what} ${v}: not a safe non-negative integer`);
    }
    this.ensure(8);
    this.view.setUint32(this.pos, Math.floor(v / TWO_32));
    this.view.setUint32(this.pos + 4, v % TWO_32);
    this.pos += 8;
  }
  str(s: string, what: string): void {
    const b = encoder.encode(s);
    if (b.length > 0xffff) {
      throw new ProtocolError(`Cannot encode ${what}: ${b.length} bytes is over 65535`);
    }
    this.u16(b.length);
    this.raw(b);
  }
  bytes(b: Uint8Array, what: string): void {
    this.u32(b.length, `${what} length`);
    this.raw(b);
  }
  id(b: Uint8Array, what: string): void {
    if (b.length !== ID_BYTES) {
      throw new ProtocolError(`Cannot encode ${what}: expected ${ID_BYTES} bytes, got ${b.length}`);
    }
    this.raw(b);
  }
  fixed(b: Uint8Array, n: number, what: string): void {
    if (b.length !== n) {
      throw new ProtocolError(`Cannot encode ${what}: expected ${n} bytes, got ${b.length}`);
    }
    this.raw(b);
  }
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  done(): Uint8Array<ArrayBuffer> {
    return this.buf.subarray(0, this.pos);
  }
}

class _Reader {
  readonly buf: Uint8Array;
  readonly frame: string;
  readonly view: DataView;
  pos = 0;
  constructor(buf: Uint8Array, frame: string) {
    this.buf = buf;
    this.frame = frame;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new ProtocolError(
        `Truncated "${this.frame}" frame: ${what} needs ${n} bytes at offset ${this.pos}, ${
          this.buf.length - this.pos
        } left`,
      );
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what: string): number {
    this.need(8, what);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    if (hi > 0x1f_ffff) {
      throw new ProtocolError(`Bad "${this.frame}" frame: ${what} is larger than a safe integer`);
    }
    return hi * TWO_32 + lo;
  }
  str(what: string): string {
    const n = this.u16(`${what} length`);
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return decoder.decode(b);
    } catch (e) {
      throw new ProtocolError(`Bad "${this.frame}" frame: ${what} is not UTF-8`, {
        cause: e,
      });
    }
  }
  bytes(what: string): Uint8Array {
    const n = this.u32(`${what} length`);
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  left(): number {
    return this.buf.length - this.pos;
  }
  fixed(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  id(what: string): Uint8Array {
    this.need(ID_BYTES, what);
    const b = this.buf.subarray(this.pos, this.pos + ID_BYTES);
    this.pos += ID_BYTES;
    return b;
  }
  kind(): EntryKind {
    const b = this.u8("kind");
    const k = BYTE_TO_KIND[b];
    if (k === undefined) {
      throw new ProtocolError(`Bad "${this.frame}" frame: unknown entry kind ${b}`);
    }
    return k;
  }
  end(): void {
    if (this.pos !== this.buf.length) {
      throw new ProtocolError(
        `Bad "${this.frame}" frame: ${this.buf.length - this.pos} trailing bytes`,
      );
    }
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
  const extra = "payload" in f
    ? f.payload.length
    : f.type === "mailboxItems"
    ? f.items.reduce((n, i) => n + i.payload.length + ID_BYTES + 4, 0)
    : f.type === "mailboxAck"
    ? f.ids.length * ID_BYTES + TAKE_KEY_BYTES
    : f.type === "mailboxTake"
    ? TAKE_KEY_BYTES
    : 0;
  const w = new _Writer(64 + extra + ("channel" in f ? f.channel.length * 3 : 0));
  w.u8(PROTOCOL_VERSION);
  w.u8(FrameType[f.type]);
  if (f.type !== "deliver") w.u32(f.reqId, "request id");
  switch (f.type) {
    case "hello":
      if (f.token === undefined) w.u8(0);
      else {
        w.u8(1);
        w.str(f.token, "token");
      }
      break;
    case "helloOk":
      w.u32(f.maxFrameBytes, "max frame bytes");
      if (f.nonce !== undefined || f.proof !== undefined) {
        w.bytes(f.nonce ?? new Uint8Array(0), "nonce");
      }
      if (f.proof !== undefined) w.bytes(f.proof, "proof");
      break;
    case "prove":
      w.bytes(f.publicKey, "public key");
      w.bytes(f.signature, "signature");
      break;
    case "create":
      w.str(f.channel, "channel");
      // The GroupInfo is optional on the wire: a frame without it is a version-1 create.
      if (f.genesis !== undefined && f.genesis.length > 0) w.bytes(f.genesis, "genesis");
      break;
    case "unsubscribe":
      w.str(f.channel, "channel");
      break;
    case "created":
      w.u8(f.created ? 1 : 0);
      break;
    case "subscribe":
      w.str(f.channel, "channel");
      if ("seq" in f.from) {
        w.u8(0);
        w.u64(f.from.seq, "from seq");
      } else {
        w.u8(1);
        w.u64(f.from.epoch, "from epoch");
      }
      break;
    case "subscribed":
      w.u64(f.fromSeq, "from seq");
      w.u64(f.head, "head");
      w.u64(f.epoch, "epoch");
      break;
    case "ok":
    case "ping":
    case "pong":
      break;
    case "publish":
      w.str(f.channel, "channel");
      w.id(f.id, "publish id");
      w.u8(KIND_TO_BYTE[f.kind]);
      w.u64(f.epoch, "epoch");
      w.bytes(f.payload, "payload");
      break;
    case "ack":
      w.u64(f.seq, "seq");
      w.u64(f.epoch, "epoch");
      break;
    case "nack":
      w.str(f.code, "code");
      w.u64(f.epoch, "epoch");
      break;
    case "deliver":
      w.str(f.channel, "channel");
      w.u64(f.seq, "seq");
      w.u64(f.epoch, "epoch");
      w.u8(KIND_TO_BYTE[f.kind]);
      w.u64(f.time, "time");
      w.id(f.id, "entry id");
      w.bytes(f.payload, "payload");
      break;
    case "mailboxPut":
      w.str(f.address, "address");
      w.id(f.id, "mailbox id");
      w.u32(f.ttl, "ttl");
      w.bytes(f.payload, "payload");
      break;
    case "mailboxTake":
      w.str(f.address, "address");
      if (f.key !== undefined) w.fixed(f.key, TAKE_KEY_BYTES, "take key");
      break;
    case "mailboxItems":
      w.u32(f.items.length, "item count");
      for (const item of f.items) {
        w.id(item.id, "mailbox id");
        w.bytes(item.payload, "payload");
      }
      break;
    case "mailboxAck":
      w.str(f.address, "address");
      w.u32(f.ids.length, "id count");
      for (const id of f.ids) w.id(id, "mailbox id");
      if (f.key !== undefined) w.fixed(f.key, TAKE_KEY_BYTES, "take key");
      break;
    case "error":
      w.str(f.code, "code");
      w.str(f.message, "message");
      break;
  }
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
  const type = TYPE_NAMES.get(bytes[1]!);
  if (type === undefined) {
    throw new ProtocolError(`Unknown frame type ${bytes[1]}`);
  }
  const r = new _Reader(bytes, type);
  r.pos = 2;
  const reqId = type === "deliver" ? 0 : r.u32("request id");
  let f: Frame;
  switch (type) {
    case "hello": {
      const flag = r.u8("token flag");
      if (flag > 1) throw new ProtocolError(`Bad "hello" frame: token flag ${flag}`);
      f = flag === 1 ? { type, reqId, token: r.str("token") } : { type, reqId };
      break;
    }
    case "helloOk": {
      const maxFrameBytes = r.u32("max frame bytes");
      const ok: FrameOf<"helloOk"> = { type, reqId, maxFrameBytes };
      if (r.pos < r.buf.length) {
        const nonce = r.bytes("nonce");
        if (nonce.length > 0) ok.nonce = nonce;
      }
      if (r.pos < r.buf.length) ok.proof = r.bytes("proof");
      f = ok;
      break;
    }
    case "prove":
      f = { type, reqId, publicKey: r.bytes("public key"), signature: r.bytes("signature") };
      break;
    case "create": {
      const channel = r.str("channel");
      f = r.pos < r.buf.length
        ? { type, reqId, channel, genesis: r.bytes("genesis") }
        : { type, reqId, channel };
      break;
    }
    case "unsubscribe":
      f = { type, reqId, channel: r.str("channel") };
      break;
    case "created": {
      const b = r.u8("created flag");
      if (b > 1) throw new ProtocolError(`Bad "created" frame: flag ${b}`);
      f = { type, reqId, created: b === 1 };
      break;
    }
    case "subscribe": {
      const channel = r.str("channel");
      const mode = r.u8("from mode");
      if (mode > 1) throw new ProtocolError(`Bad "subscribe" frame: from mode ${mode}`);
      const v = r.u64("from value");
      f = { type, reqId, channel, from: mode === 0 ? { seq: v } : { epoch: v } };
      break;
    }
    case "subscribed":
      f = { type, reqId, fromSeq: r.u64("from seq"), head: r.u64("head"), epoch: r.u64("epoch") };
      break;
    case "ok":
    case "ping":
    case "pong":
      f = { type, reqId };
      break;
    case "publish": {
      const channel = r.str("channel");
      const id = r.id("publish id");
      const kind = r.kind();
      const epoch = r.u64("epoch");
      f = { type, reqId, channel, id, kind, epoch, payload: r.bytes("payload") };
      break;
    }
    case "ack":
      f = { type, reqId, seq: r.u64("seq"), epoch: r.u64("epoch") };
      break;
    case "nack":
      f = { type, reqId, code: r.str("code"), epoch: r.u64("epoch") };
      break;
    case "deliver": {
      const channel = r.str("channel");
      const seq = r.u64("seq");
      const epoch = r.u64("epoch");
      const kind = r.kind();
      const time = r.u64("time");
      const id = r.id("entry id");
      f = { type, channel, seq, epoch, kind, time, id, payload: r.bytes("payload") };
      break;
    }
    case "mailboxPut": {
      const address = r.str("address");
      const id = r.id("mailbox id");
      const ttl = r.u32("ttl");
      f = { type, reqId, address, id, ttl, payload: r.bytes("payload") };
      break;
    }
    case "mailboxTake": {
      const address = r.str("address");
      f = r.left() === 0
        ? { type, reqId, address }
        : { type, reqId, address, key: r.fixed(TAKE_KEY_BYTES, "take key") };
      break;
    }
    case "mailboxItems": {
      const n = r.u32("item count");
      // Each item takes at least 20 bytes, so a lying count fails fast instead of looping.
      r.need(n * (ID_BYTES + 4), "items");
      const items: MailboxItem[] = [];
      for (let i = 0; i < n; i++) {
        items.push({ id: r.id("mailbox id"), payload: r.bytes("payload") });
      }
      f = { type, reqId, items };
      break;
    }
    case "mailboxAck": {
      const address = r.str("address");
      const n = r.u32("id count");
      // A lying count fails here, before anything is allocated for it.
      r.need(n * ID_BYTES, "ids");
      const ids: Uint8Array[] = [];
      for (let i = 0; i < n; i++) ids.push(r.id("mailbox id"));
      f = r.left() === 0
        ? { type, reqId, address, ids }
        : { type, reqId, address, ids, key: r.fixed(TAKE_KEY_BYTES, "take key") };
      break;
    }
    case "error":
      f = { type, reqId, code: r.str("code"), message: r.str("message") };
      break;
  }
  r.end();
  return f;
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
  const type = TYPE_NAMES.get(bytes[1]!);
  if (type === undefined || type === "deliver") return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(2);
}
