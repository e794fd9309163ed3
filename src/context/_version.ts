/**
 * The replicated register: one version of a key as members exchange and
 * store it (short field names: it is on the wire), the checks a local write
 * passes before it becomes one, its TTL, and how it reads as an entry.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import type { Hlc } from "./hlc.ts";
import { type ContextEntry, type EntryType, EntryTypes, MAX_VALUE_BYTES } from "./types.ts";

/** One version of a register, as replicated (short names: it is on the wire). */
export interface Version {
  /** key */
  k: string;
  /** type */
  y: EntryType;
  /** timestamp */
  h: Hlc;
  /** author did */
  a: string;
  /** author name */
  an: string;
  /** the value, when readable by every member */
  v?: unknown;
  /** did → base64 HPKE box of the value's JSON, when restricted */
  s?: Record<string, string>;
  /** expiry, ms since the epoch */
  x?: number;
  /** handoff recipient did */
  to?: string;
  /** a tombstone */
  d?: 1;
}

/** The messages of the `ctx` layer. */
export type Wire =
  | { v: 1; op: "put"; e: Version[] }
  | { v: 1; op: "sync"; id: string }
  | { v: 1; op: "snap"; id: string; to: string; box: string };

/** The store blob of one channel's context. */
export interface Saved {
  /** The format's version. */
  v: 1;
  /** The current version of each key. */
  entries: Version[];
  /** This member's writes the relay has not taken yet. */
  outbox: Version[];
  /** The clock's greatest time issued or seen. */
  clock: { t: number; c: number };
}

/** The kinds of entries, as a set. */
export const TYPES: ReadonlySet<string> = new Set<string>(Object.values(EntryTypes));
/** A key: 1 to 256 characters, none of them a control character. */
// deno-lint-ignore no-control-regex -- keys must not hold control characters
export const KEY = /^[^\x00-\x1f\x7f]{1,256}$/;
/** Writes batched into one message, and snapshot parts, stay below this. */
export const MAX_BATCH_BYTES = 256 * 1024;

const enc = new TextEncoder();

/**
 * Checks a local write before it becomes a version.
 *
 * @param key The key.
 * @param type The entry type.
 * @param value The value (ignored for a delete).
 * @param opts The TTL in seconds, and whether it is a delete.
 * @returns The value's JSON, or `undefined` for a delete.
 * @throws {ValidationError} `invalid_argument` for a bad key, type, TTL or value,
 *   `too_large` for a value over {@linkcode MAX_VALUE_BYTES}.
 */
export function checkWrite(
  key: string,
  type: EntryType,
  value: unknown,
  opts: { ttl?: number | undefined; del?: boolean | undefined },
): string | undefined {
  if (typeof key !== "string" || !KEY.test(key)) {
    throw new ValidationError(
      "invalid_argument",
      `Context key must be 1-256 characters without control characters, got ${
        JSON.stringify(key)?.slice(0, 60)
      }`,
    );
  }
  if (!TYPES.has(type)) {
    throw new ValidationError(
      "invalid_argument",
      `Context entry type must be one of ${[...TYPES].join(", ")}, got "${String(type)}"`,
    );
  }
  if (opts.ttl !== undefined && (!Number.isFinite(opts.ttl) || opts.ttl <= 0)) {
    throw new ValidationError("invalid_argument", `TTL must be a positive number of seconds`);
  }
  if (opts.del) return undefined;
  const json = value === undefined ? undefined : JSON.stringify(value);
  if (json === undefined) {
    throw new ValidationError("invalid_argument", `The value of "${key}" must be JSON`);
  }
  if (enc.encode(json).length > MAX_VALUE_BYTES) {
    throw new ValidationError(
      "too_large",
      `The value of "${key}" is over ${MAX_VALUE_BYTES} bytes of JSON`,
    );
  }
  return json;
}

/**
 * Whether a version is a live entry: not deleted, not expired.
 *
 * @param v The version, if any.
 * @param now The time to judge expiry at (ms).
 * @returns True if it reads as an entry.
 */
export function isLive(v: Version | undefined, now: number = Date.now()): v is Version {
  return v !== undefined && v.d === undefined && (v.x === undefined || v.x > now);
}

/**
 * A version as a snapshot gives it: the state, not its history, so an expired
 * entry goes as a tombstone, without its value.
 *
 * @param v The version.
 * @param now The time to judge expiry at (ms).
 * @returns `v`, or its tombstone if it has expired.
 */
export function forSnapshot(v: Version, now: number): Version {
  return v.x !== undefined && v.x <= now && v.d === undefined
    ? { k: v.k, y: v.y, h: v.h, a: v.a, an: v.an, x: v.x, d: 1 }
    : v;
}

/**
 * A version's identity: its key and timestamp.
 *
 * @param v The version.
 * @returns A string unique to it.
 */
export function versionId(v: Version): string {
  return `${v.k}\0${v.h.t}.${v.h.c}.${v.h.n}`;
}

/**
 * A version as the API shows it.
 *
 * @param v The version.
 * @param value Its value (opened, if sealed).
 * @returns The entry.
 */
export function toEntry(v: Version, value: unknown): ContextEntry {
  const entry: ContextEntry = {
    key: v.k,
    type: v.y,
    value,
    author: { name: v.an, did: v.a },
    updated: new Date(v.h.t).toISOString(),
  };
  if (v.x !== undefined) entry.expires = new Date(v.x).toISOString();
  if (v.s) entry.visibleTo = Object.keys(v.s);
  if (v.to !== undefined) entry.to = v.to;
  return entry;
}

/**
 * Splits versions into parts whose JSON stays below {@linkcode MAX_BATCH_BYTES}
 * (a version larger than that is a part of its own).
 *
 * @param versions The versions.
 * @returns The parts, in order; one empty part for no versions.
 */
export function batches(versions: Version[]): Version[][] {
  const parts: Version[][] = [[]];
  let size = 0;
  for (const v of versions) {
    const n = JSON.stringify(v).length;
    if (size + n > MAX_BATCH_BYTES && parts[parts.length - 1]!.length > 0) {
      parts.push([]);
      size = 0;
    }
    parts[parts.length - 1]!.push(v);
    size += n;
  }
  return parts;
}
