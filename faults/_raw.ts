// A raw relay connection for the scenarios: frames in and out with the
// project's codec over the `ws` package, so a test can misbehave on purpose
// (stop reading, replay, send garbage).
import { Buffer } from "node:buffer";
import net from "node:net";
import WebSocket from "ws";
import { type IdentityKey, signWith } from "../src/identity.ts";
import { decodeFrame, encodeFrame, type Frame, PROVE_CONTEXT } from "../src/relay/protocol.ts";

/** One raw connection. */
export class RawConn {
  ws: WebSocket;
  frames: Frame[] = [];
  #next = 1;
  #waiters = new Map<number, (f: Frame) => void>();
  onDeliver: ((f: Extract<Frame, { type: "deliver" }>) => void) | undefined;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      if (f.type === "deliver") {
        this.onDeliver?.(f);
        return;
      }
      this.frames.push(f);
      const w = this.#waiters.get(f.reqId);
      if (w) {
        this.#waiters.delete(f.reqId);
        w(f);
      }
    });
  }

  /**
   * Connects and says hello; given an identity key, proves it (the relay then
   * treats the connection as that member's).
   */
  static async open(url: string, as?: IdentityKey): Promise<RawConn> {
    const ws = new WebSocket(url);
    ws.binaryType = "nodebuffer";
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    const c = new RawConn(ws);
    const ok = await c.request({ type: "hello", reqId: 0 });
    if (as !== undefined && ok.type === "helloOk" && ok.nonce !== undefined) {
      const signature = await signWith(as, new Uint8Array([...PROVE_CONTEXT, ...ok.nonce]));
      await c.request({ type: "prove", reqId: 0, publicKey: as.publicKey, signature });
    }
    return c;
  }

  /** Sends a request frame (its reqId is assigned) and waits for the answer (bounded). */
  request(f: Frame, ms = 15_000): Promise<Frame> {
    const reqId = this.#next++;
    const frame = { ...f, reqId } as Frame;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${f.type} in ${ms} ms`)), ms);
      this.#waiters.set(reqId, (a) => {
        clearTimeout(t);
        resolve(a);
      });
      this.ws.send(encodeFrame(frame));
    });
  }

  /** Sends raw bytes and waits for the answer to `reqId` (bounded). */
  raw(bytes: Uint8Array, reqId: number, ms = 15_000): Promise<Frame | undefined> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#waiters.delete(reqId);
        resolve(undefined);
      }, ms);
      this.#waiters.set(reqId, (a) => {
        clearTimeout(t);
        resolve(a);
      });
      this.ws.send(bytes);
    });
  }

  /** Closes. */
  close(): void {
    this.ws.terminate();
  }
}

/**
 * A subscriber on a bare TCP socket with its own minimal WebSocket framing, so
 * it can stop reading for real on every runtime (`socket.pause()`).
 */
export class TcpSubscriber {
  socket: net.Socket;
  seqs: number[] = [];
  #buf = Buffer.alloc(0);
  #upgraded = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (d: Buffer) => this.#onData(d));
  }

  /** Connects to `ws://127.0.0.1:port`, says hello and subscribes to `channel` from seq 1. */
  static async open(port: number, channel: string): Promise<TcpSubscriber> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
    });
    const s = new TcpSubscriber(socket);
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
    socket.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    s.send(encodeFrame({ type: "hello", reqId: 1 }));
    s.send(encodeFrame({ type: "subscribe", reqId: 2, channel, from: { seq: 1 } }));
    return s;
  }

  /** Sends one masked binary frame. */
  send(payload: Uint8Array): void {
    const n = payload.length;
    const head = n < 126
      ? Buffer.from([0x82, 0x80 | n])
      : n < 65536
      ? Buffer.from([0x82, 0x80 | 126, n >> 8, n & 255])
      : (() => {
        const h = Buffer.alloc(10);
        h[0] = 0x82;
        h[1] = 0x80 | 127;
        h.writeBigUInt64BE(BigInt(n), 2);
        return h;
      })();
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const body = Buffer.from(payload);
    for (let i = 0; i < n; i++) body[i]! ^= mask[i & 3]!;
    this.socket.write(Buffer.concat([head, Buffer.from(mask), body]));
  }

  #onData(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d]);
    if (!this.#upgraded) {
      const end = this.#buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      this.#upgraded = true;
      this.#buf = this.#buf.subarray(end + 4);
    }
    for (;;) {
      const b = this.#buf;
      if (b.length < 2) return;
      let len = b[1]! & 127;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const opcode = b[0]! & 15;
      const payload = new Uint8Array(b.subarray(off, off + len));
      this.#buf = b.subarray(off + len);
      if (opcode === 2) {
        const f = decodeFrame(payload);
        if (f.type === "deliver") this.seqs.push(f.seq);
      }
    }
  }

  /** Stops reading. */
  pause(): void {
    this.socket.pause();
  }

  /** Reads again. */
  resume(): void {
    this.socket.resume();
  }

  /** Closes. */
  close(): void {
    this.socket.destroy();
  }
}
