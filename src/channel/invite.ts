/**
 * Invite tokens (`skt_inv_…`) and the authenticated join requests and replies
 * that travel through the relay's mailboxes. The relay sees only mailbox
 * addresses and opaque, HMAC-authenticated payloads; it never learns the
 * secret. Only the inviter holds the take key of the request mailbox, and only
 * each joiner that of its reply mailbox.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";

const PREFIX = "skt_inv_";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** What an invite token carries. */
export interface InviteToken {
  /** The relay URL of the inviter. */
  relay: string;
  /** The channel. */
  channel: string;
  /** The invite id (hex); bound into the MACs of requests and replies. */
  id: string;
  /**
   * The inviter's request mailbox, `inv:` + 64 hex digits. Its take key stays
   * with the inviter (in its {@linkcode InviteRecord}), never in the token.
   */
  address: string;
  /** The shared secret (hex) that authenticates requests and replies. */
  secret: string;
  /** Expiry, ms since the epoch. */
  expires: number;
  /** The channel's MLS ciphersuite, when not the default: the joiner's key package must match. */
  suite?: string | undefined;
}

/** A stored, still-usable invite on the inviter's side. */
export interface InviteRecord extends InviteToken {
  /** The take key of the request mailbox (hex): only the inviter can take requests. */
  takeKey: string;
  /** How many more joins it admits. */
  uses: number;
  /**
   * The requests it admitted: reply address and SHA-256 of the key package
   * (hex). A request seen again with both the same gets the same Welcome and
   * uses nothing; one that shares only one of them is refused.
   */
  admitted?: Admission[] | undefined;
}

/** One admission of an invite. */
export interface Admission {
  /** The reply address of the admitted request. */
  reply: string;
  /** SHA-256 of the admitted key package, hex. */
  keyPackage: string;
}

function b64url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * Encodes an invite as a token.
 *
 * @param t The invite.
 * @returns `skt_inv_…`.
 */
export function encodeInviteToken(t: InviteToken): string {
  const body = {
    v: 2,
    r: t.relay,
    c: t.channel,
    i: t.id,
    a: t.address,
    s: t.secret,
    e: t.expires,
    ...(t.suite !== undefined ? { cs: t.suite } : {}),
  };
  return PREFIX + b64url(enc.encode(JSON.stringify(body)));
}

/**
 * Decodes and checks an invite token.
 *
 * @param token The token.
 * @returns The invite.
 * @throws {ValidationError} `invalid_argument` if malformed or expired.
 */
export function decodeInviteToken(token: unknown): InviteToken {
  const bad = (why: string) =>
    new ValidationError("invalid_argument", `Invite token is not usable: ${why}`);
  if (typeof token !== "string" || !token.startsWith(PREFIX)) {
    throw bad(`expected a string starting with "${PREFIX}"`);
  }
  let body: {
    v?: unknown;
    r?: unknown;
    c?: unknown;
    i?: unknown;
    a?: unknown;
    s?: unknown;
    e?: unknown;
    cs?: unknown;
  };
  try {
    body = JSON.parse(
      dec.decode(Uint8Array.fromBase64(token.slice(PREFIX.length), { alphabet: "base64url" })),
    );
  } catch {
    throw bad("it is truncated or altered");
  }
  if (body?.v === 1) {
    throw bad("it was made by an older version of Skytale: ask the inviter for a new one");
  }
  if (
    body?.v !== 2 || typeof body.a !== "string" || !/^inv:[0-9a-f]{64}$/.test(body.a) ||
    typeof body.r !== "string" || typeof body.c !== "string" ||
    typeof body.i !== "string" || !/^[0-9a-f]{32}$/.test(body.i) ||
    typeof body.s !== "string" || !/^[0-9a-f]{64}$/.test(body.s) || typeof body.e !== "number"
  ) {
    throw bad("it is truncated or altered");
  }
  if (body.e < Date.now()) throw bad(`it expired at ${new Date(body.e).toISOString()}`);
  return {
    relay: body.r,
    channel: body.c,
    id: body.i,
    address: body.a,
    secret: body.s,
    expires: body.e,
    ...(typeof body.cs === "string" ? { suite: body.cs.slice(0, 120) } : {}),
  };
}

async function hmac(secretHex: string, label: string, data: Uint8Array): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    Uint8Array.fromHex(secretHex) as BufferSource,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const msg = new Uint8Array([...enc.encode(label), 0, ...data]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, msg as BufferSource));
}

/**
 * Seals a JSON value with an HMAC under the invite secret.
 *
 * @param secretHex The invite secret.
 * @param label What the value is (`request:<id>` or `reply:<id>`), bound into the MAC.
 * @param value The value.
 * @returns MAC (32 bytes) followed by the JSON bytes.
 */
export async function seal(secretHex: string, label: string, value: unknown): Promise<Uint8Array> {
  const body = enc.encode(JSON.stringify(value));
  const mac = await hmac(secretHex, label, body);
  const out = new Uint8Array(32 + body.length);
  out.set(mac);
  out.set(body, 32);
  return out;
}

/**
 * Opens a sealed value, checking its MAC in constant time.
 *
 * @param secretHex The invite secret.
 * @param label The label it was sealed with.
 * @param sealed The sealed bytes.
 * @returns The value, or `undefined` if the MAC does not verify.
 */
export async function open<T>(
  secretHex: string,
  label: string,
  sealed: Uint8Array,
): Promise<T | undefined> {
  if (sealed.length < 33) return undefined;
  const body = sealed.subarray(32);
  const want = await hmac(secretHex, label, body);
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= want[i]! ^ sealed[i]!;
  if (diff !== 0) return undefined;
  try {
    return JSON.parse(dec.decode(body)) as T;
  } catch {
    return undefined;
  }
}
