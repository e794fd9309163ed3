import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeFrame,
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  type Frame,
  FrameType,
  PROTOCOL_VERSION,
} from "../src/relay/protocol.ts";
import { ProtocolError } from "../src/errors.ts";

const id = (n: number) => new Uint8Array(16).fill(n);
const bytes = (...b: number[]) => new Uint8Array(b);

const samples: Frame[] = [
  { type: "hello", reqId: 1 },
  { type: "hello", reqId: 2, token: "eyJ.tok.en" },
  { type: "helloOk", reqId: 2, maxFrameBytes: DEFAULT_MAX_FRAME_BYTES },
  { type: "helloOk", reqId: 2, maxFrameBytes: 1024, nonce: new Uint8Array(16).fill(7) },
  {
    type: "helloOk",
    reqId: 2,
    maxFrameBytes: 1024,
    nonce: new Uint8Array(16).fill(7),
    proof: new Uint8Array(32).fill(9),
  },
  { type: "prove", reqId: 2, publicKey: new Uint8Array(32).fill(1), signature: new Uint8Array(64) },
  { type: "create", reqId: 3, channel: "acme/research/results" },
  { type: "create", reqId: 3, channel: "acme/research/results", genesis: new Uint8Array([1, 2]) },
  { type: "created", reqId: 3, created: true },
  { type: "created", reqId: 3, created: false },
  { type: "subscribe", reqId: 4, channel: "a/b/c", from: { seq: 17 } },
  { type: "subscribe", reqId: 4, channel: "a/b/c", from: { epoch: 3 } },
  { type: "subscribed", reqId: 4, fromSeq: 5, head: 2 ** 40, epoch: 9 },
  { type: "unsubscribe", reqId: 5, channel: "a/b/c" },
  { type: "ok", reqId: 5 },
  {
    type: "publish",
    reqId: 0xffff_ffff,
    channel: "a/b/c",
    id: id(7),
    kind: "commit",
    epoch: Number.MAX_SAFE_INTEGER,
    payload: bytes(1, 2, 3),
  },
  { type: "ack", reqId: 6, seq: 1, epoch: 0 },
  { type: "nack", reqId: 6, code: "stale_epoch", epoch: 4 },
  {
    type: "deliver",
    channel: "ünï/cödé/✓",
    seq: 42,
    epoch: 2,
    kind: "proposal",
    time: 1_750_000_000_000,
    id: id(1),
    payload: new Uint8Array(0),
  },
  { type: "mailboxPut", reqId: 8, address: "kp:abcd", id: id(2), ttl: 3600, payload: bytes(9) },
  { type: "mailboxTake", reqId: 9, address: "kp:abcd", key: bytes(...Array(32).fill(7)) },
  // Without the take key: frames of clients from before mailbox ownership still decode.
  { type: "mailboxTake", reqId: 9, address: "kp:abcd" },
  { type: "mailboxItems", reqId: 9, items: [] },
  {
    type: "mailboxItems",
    reqId: 9,
    items: [{ id: id(3), payload: bytes(1) }, { id: id(4), payload: bytes(2, 3) }],
  },
  {
    type: "mailboxAck",
    reqId: 11,
    address: "inv:abcd",
    ids: [id(3), id(4)],
    key: bytes(...Array(32).fill(8)),
  },
  { type: "mailboxAck", reqId: 11, address: "inv:abcd", ids: [id(3), id(4)] },
  { type: "mailboxAck", reqId: 11, address: "inv:abcd", ids: [] },
  { type: "ping", reqId: 10 },
  { type: "pong", reqId: 10 },
  { type: "error", reqId: 0, code: "protocol", message: "Unknown frame type 99" },
];

/**
 * The bytes the hand-written codec of version 1 (one `switch` per direction) made of `samples`,
 * in order: the table-driven codec must write exactly these, since relays and clients of older
 * versions talk to each other.
 */
const V1_BYTES = [
  "01010000000100", // hello
  "01010000000201000a65794a2e746f6b2e656e", // hello
  "01020000000200110000", // helloOk
  "010200000002000004000000001007070707070707070707070707070707", // helloOk
  "010200000002000004000000001007070707070707070707070707070707000000200909090909090909090909090909090909090909090909090909090909090909", // helloOk
  "0114000000020000002001010101010101010101010101010101010101010101010101010101010101010000004000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", // prove
  "010300000003001561636d652f72657365617263682f726573756c7473", // create
  "010300000003001561636d652f72657365617263682f726573756c7473000000020102", // create
  "01040000000301", // created
  "01040000000300", // created
  "0105000000040005612f622f63000000000000000011", // subscribe
  "0105000000040005612f622f63010000000000000003", // subscribe
  "010600000004000000000000000500000100000000000000000000000009", // subscribed
  "0107000000050005612f622f63", // unsubscribe
  "010800000005", // ok
  "0109ffffffff0005612f622f630707070707070707070707070707070701001fffffffffffff00000003010203", // publish
  "010a0000000600000000000000010000000000000000", // ack
  "010b00000006000b7374616c655f65706f63680000000000000004", // nack
  "010c0010c3bc6ec3af2f63c3b664c3a92fe29c93000000000000002a000000000000000202000001977420dc000101010101010101010101010101010100000000", // deliver
  "010d0000000800076b703a616263640202020202020202020202020202020200000e100000000109", // mailboxPut
  "010e0000000900076b703a616263640707070707070707070707070707070707070707070707070707070707070707", // mailboxTake
  "010e0000000900076b703a61626364", // mailboxTake
  "010f0000000900000000", // mailboxItems
  "010f000000090000000203030303030303030303030303030303000000010104040404040404040404040404040404000000020203", // mailboxItems
  "01130000000b0008696e763a616263640000000203030303030303030303030303030303040404040404040404040404040404040808080808080808080808080808080808080808080808080808080808080808", // mailboxAck
  "01130000000b0008696e763a61626364000000020303030303030303030303030303030304040404040404040404040404040404", // mailboxAck
  "01130000000b0008696e763a6162636400000000", // mailboxAck
  "01100000000a", // ping
  "01110000000a", // pong
  "011200000000000870726f746f636f6c0015556e6b6e6f776e206672616d652074797065203939", // error
];

test("every sample frame encodes to the same bytes as the version-1 codec and decodes back", () => {
  assert.equal(V1_BYTES.length, samples.length);
  samples.forEach((f, i) => {
    assert.equal(encodeFrame(f).toHex(), V1_BYTES[i], `sample ${i} (${f.type})`);
    assert.deepEqual(decodeFrame(Uint8Array.fromHex(V1_BYTES[i]!)), f, `sample ${i} (${f.type})`);
  });
});

test("every frame type survives an encode/decode round trip", () => {
  const seen = new Set<string>();
  for (const f of samples) {
    const b = encodeFrame(f);
    assert.equal(b[0], PROTOCOL_VERSION);
    assert.equal(b[1], FrameType[f.type]);
    assert.deepEqual(decodeFrame(b), f);
    seen.add(f.type);
  }
  assert.deepEqual([...seen].sort(), Object.keys(FrameType).sort());
});

test("a publish frame has the documented byte layout", () => {
  const b = encodeFrame({
    type: "publish",
    reqId: 0x01020304,
    channel: "a/b/c",
    id: id(0xaa),
    kind: "commit",
    epoch: 5,
    payload: bytes(0xde, 0xad),
  });
  assert.deepEqual(
    [...b],
    [
      1,
      0x09,
      1,
      2,
      3,
      4,
      0,
      5,
      ...new TextEncoder().encode("a/b/c"),
      ...id(0xaa),
      1,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      5,
      0,
      0,
      0,
      2,
      0xde,
      0xad,
    ],
  );
});

test("a mailboxAck frame has the documented byte layout", () => {
  const b = encodeFrame({ type: "mailboxAck", reqId: 0x01020304, address: "a", ids: [id(0xaa)] });
  assert.deepEqual([...b], [1, 0x13, 1, 2, 3, 4, 0, 1, 0x61, 0, 0, 0, 1, ...id(0xaa)]);
  // The take key, when there (always, from current clients), ends the frame.
  const key = bytes(...Array(32).fill(0xbb));
  const k = encodeFrame({
    type: "mailboxAck",
    reqId: 0x01020304,
    address: "a",
    ids: [id(0xaa)],
    key,
  });
  assert.deepEqual([...k], [1, 0x13, 1, 2, 3, 4, 0, 1, 0x61, 0, 0, 0, 1, ...id(0xaa), ...key]);
  const t = encodeFrame({ type: "mailboxTake", reqId: 0x01020304, address: "a", key });
  assert.deepEqual([...t], [1, 0x0e, 1, 2, 3, 4, 0, 1, 0x61, ...key]);
  assert.throws(
    () => encodeFrame({ type: "mailboxTake", reqId: 1, address: "a", key: bytes(1, 2) }),
    /take key: expected 32 bytes, got 2/,
  );
});

function isProtocolError(e: unknown): boolean {
  return e instanceof ProtocolError && e.code === "protocol" && e.message.length > 0;
}

test("decodeFrame() refuses truncated frames with a protocol error", () => {
  for (const f of samples) {
    const b = encodeFrame(f);
    // A frame cut exactly before an optional trailing field is the same frame without it.
    const without = Object.fromEntries(
      Object.entries(f).filter(([k]) => !["genesis", "nonce", "proof", "key"].includes(k)),
    ) as Frame;
    // helloOk's proof follows its nonce: a cut before the proof is the frame without it.
    const withoutProof = Object.fromEntries(
      Object.entries(f).filter(([k]) => k !== "proof"),
    ) as Frame;
    const valid = new Map([
      [encodeFrame(without).length, without],
      [encodeFrame(withoutProof).length, withoutProof],
    ]);
    for (let n = 0; n < b.length; n++) {
      const same = valid.get(n);
      if (same !== undefined) {
        assert.deepEqual(decodeFrame(b.subarray(0, n)), same);
        continue;
      }
      assert.throws(() => decodeFrame(b.subarray(0, n)), isProtocolError, `${f.type} cut at ${n}`);
    }
  }
});

test("decodeFrame() refuses trailing bytes, bad versions, unknown types and oversize", () => {
  const ping = encodeFrame({ type: "ping", reqId: 1 });
  assert.throws(() => decodeFrame(new Uint8Array([...ping, 0])), /trailing/);
  assert.throws(() => decodeFrame(new Uint8Array([2, ...ping.subarray(1)])), /version 2/);
  assert.throws(() => decodeFrame(bytes(1, 0xee, 0, 0, 0, 1)), /Unknown frame type 238/);
  assert.throws(() => decodeFrame(new Uint8Array(101), 100), isProtocolError);
  assert.throws(() => decodeFrame(new Uint8Array(0)), /too short/);
  // A lying item count must fail fast, not allocate or loop.
  assert.throws(
    () => decodeFrame(bytes(1, FrameType.mailboxItems, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff)),
    /Truncated/,
  );
  // Likewise a lying id count in an ack (address "a", then 2^32 - 1 ids).
  assert.throws(
    () =>
      decodeFrame(bytes(1, FrameType.mailboxAck, 0, 0, 0, 1, 0, 1, 0x61, 0xff, 0xff, 0xff, 0xff)),
    /Truncated "mailboxAck" frame: ids needs/,
  );
  // Invalid UTF-8 in a string field.
  assert.throws(
    () => decodeFrame(bytes(1, FrameType.create, 0, 0, 0, 1, 0, 2, 0xc3, 0x28)),
    /not UTF-8/,
  );
  // A u64 beyond Number.MAX_SAFE_INTEGER.
  assert.throws(
    () =>
      decodeFrame(
        bytes(1, FrameType.ack, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
      ),
    /safe integer/,
  );
});

test("encodeFrame() refuses ids that are not 16 bytes and out-of-range numbers", () => {
  assert.throws(
    () =>
      encodeFrame({
        type: "publish",
        reqId: 1,
        channel: "a/b/c",
        id: new Uint8Array(3),
        kind: "application",
        epoch: 0,
        payload: new Uint8Array(0),
      }),
    isProtocolError,
  );
  assert.throws(() => encodeFrame({ type: "ack", reqId: -1, seq: 1, epoch: 0 }), isProtocolError);
  assert.throws(
    () => encodeFrame({ type: "ack", reqId: 1, seq: 2 ** 60, epoch: 0 }),
    isProtocolError,
  );
});

test("decodeFrame() never throws anything but ProtocolError on random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      try {
        decodeFrame(b);
      } catch (e) {
        if (!isProtocolError(e)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
});

test("decodeFrame() survives random frames with a valid header, mutated or cut", () => {
  const types = Object.values(FrameType);
  fc.assert(
    fc.property(
      fc.constantFrom(...types),
      fc.uint8Array({ maxLength: 120 }),
      (type, body) => {
        try {
          const f = decodeFrame(new Uint8Array([PROTOCOL_VERSION, type, ...body]));
          // Whatever decodes must re-encode to the same bytes.
          assert.deepEqual(encodeFrame(f), new Uint8Array([PROTOCOL_VERSION, type, ...body]));
        } catch (e) {
          if (!isProtocolError(e)) throw e;
        }
      },
    ),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.constantFrom(...samples), fc.nat(), fc.nat(255), (f, pos, val) => {
      const b = encodeFrame(f).slice();
      b[pos % b.length] = val;
      try {
        decodeFrame(b);
      } catch (e) {
        if (!isProtocolError(e)) throw e;
      }
    }),
    { numRuns: 3000 },
  );
});
