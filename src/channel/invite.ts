/**
 * Invite tokens (`skt_inv_…`) and the authenticated join requests and replies
 * that travel through the relay's mailboxes. The relay sees only mailbox
 * addresses and opaque, HMAC-authenticated payloads; it never learns the
 * secret. Only the inviter holds the take key of the request mailbox, and only
 * each joiner that of its reply mailbox.
 *
 * @module
 */
import { z } from "zod";
import { ProtocolError, StateError, ValidationError } from "../errors.ts";
import { timingSafeEqual } from "../_util.ts";
import { parseChannelName } from "../validate.ts";

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

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ADDRESS = /^inv:[0-9a-f]{64}$/;

function isChannelName(name: string): boolean {
  try {
    parseChannelName(name);
    return true;
  } catch {
    return false;
  }
}

/** A token body of the first version (its request mailbox could not be taken from). */
const OldToken = z.object({ v: z.literal(1) });

/** A token's body: short keys, to keep tokens short. */
const TokenBody = z.object({
  v: z.literal(2),
  r: z.string(),
  c: z.string().refine(isChannelName, "not a channel name"),
  i: z.string().regex(HEX32),
  a: z.string().regex(ADDRESS),
  s: z.string().regex(HEX64),
  e: z.number(),
  cs: z.unknown().optional(),
});

/** A joiner's request, sealed to the inviter's request mailbox. */
export const JoinRequest: z.ZodType<{ keyPackage: string; reply: string; identity: string }> = z
  .object({ keyPackage: z.string(), reply: z.string(), identity: z.string() });

/** The inviter's reply, sealed to the joiner's reply mailbox. */
export const JoinReply: z.ZodType<{
  ok: boolean;
  welcome?: string | undefined;
  error?: string | undefined;
  req?: string | undefined;
}> = z.object({
  ok: z.boolean(),
  welcome: z.string().optional(),
  error: z.string().optional(),
  req: z.string().optional(),
});

const Admitted = z.union([
  z.object({ reply: z.string(), keyPackage: z.string() }),
  // Records from before admissions named their key package: such a reply address is matched
  // by no key package, so a request that reuses it is refused.
  z.string().transform((reply) => ({ reply, keyPackage: "" })),
]);

/** A stored invite; those from before mailbox take keys (no `takeKey`, no `address`) fail it. */
const StoredInvite: z.ZodType<InviteRecord> = z.object({
  relay: z.string(),
  channel: z.string(),
  id: z.string(),
  address: z.string().min(1),
  secret: z.string().regex(HEX64),
  expires: z.number(),
  suite: z.string().optional(),
  takeKey: z.string(),
  uses: z.number(),
  admitted: z.array(Admitted).optional(),
});

/**
 * Reads the inviter's stored invites (its `invites` blob), dropping those it
 * cannot use any more.
 *
 * @param json The blob's JSON.
 * @returns The usable invites, and how many were dropped.
 * @throws {StateError} `state_corrupt` if the blob is not a JSON list.
 */
export function parseInviteRecords(json: string): { invites: InviteRecord[]; dropped: number } {
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch (e) {
    throw new StateError("state_corrupt", "The stored invites are not JSON", { cause: e });
  }
  const all = z.array(z.unknown()).safeParse(list);
  if (!all.success) throw new StateError("state_corrupt", "The stored invites are not a list");
  const invites: InviteRecord[] = [];
  for (const item of all.data) {
    const r = StoredInvite.safeParse(item);
    if (r.success) invites.push(r.data);
  }
  return { invites, dropped: all.data.length - invites.length };
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
  let json: unknown;
  try {
    json = JSON.parse(
      dec.decode(Uint8Array.fromBase64(token.slice(PREFIX.length), { alphabet: "base64url" })),
    );
  } catch {
    throw bad("it is truncated or altered");
  }
  if (OldToken.safeParse(json).success) {
    throw bad("it was made by an older version of Skytale: ask the inviter for a new one");
  }
  const parsed = TokenBody.safeParse(json);
  if (!parsed.success) throw bad(`it is truncated or altered (${issue(parsed.error)})`);
  const body = parsed.data;
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

/** The first problem zod found, as `path: message`. */
function issue(e: z.ZodError): string {
  const i = e.issues[0];
  return i ? `${i.path.length > 0 ? i.path.join(".") + ": " : ""}${i.message}` : "malformed";
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
 * Opens a sealed value: checks its MAC in constant time, then its shape.
 *
 * @param secretHex The invite secret.
 * @param label The label it was sealed with.
 * @param sealed The sealed bytes.
 * @param schema The shape the value must have (e.g. {@linkcode JoinRequest}).
 * @returns The value, or `undefined` if the MAC does not verify.
 * @throws {ProtocolError} `protocol` if the MAC verifies but the value is not JSON of that shape.
 */
export async function open<T>(
  secretHex: string,
  label: string,
  sealed: Uint8Array,
  schema: z.ZodType<T>,
): Promise<T | undefined> {
  if (sealed.length < 33) return undefined;
  const body = sealed.subarray(32);
  const want = await hmac(secretHex, label, body);
  if (!timingSafeEqual(want, sealed.subarray(0, 32))) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(dec.decode(body));
  } catch {
    throw new ProtocolError(`The ${label.split(":")[0]} is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ProtocolError(
      `The ${label.split(":")[0]} is malformed (${issue(parsed.error)})`,
    );
  }
  return parsed.data;
}
