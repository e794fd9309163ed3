/**
 * The byte primitives of the relay codec: a growing big-endian writer and a
 * bounds-checked reader whose errors name the frame and the field. Which
 * fields a frame has, and in what order, is the table in `protocol.ts`.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const TWO_32 = 0x1_0000_0000;

/** Writes a frame into a buffer that grows as needed. */
export class Writer {
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

/** Reads the fields of one frame; every read checks that the bytes are there. */
export class Reader {
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
  end(): void {
    if (this.pos !== this.buf.length) {
      throw new ProtocolError(
        `Bad "${this.frame}" frame: ${this.buf.length - this.pos} trailing bytes`,
      );
    }
  }
}
