/**
 * Parsing what the shared context reads from others: the `ctx` messages of
 * other members (decrypted by MLS, but written by whoever they are), the
 * snapshots they seal to a joiner, and the store blob. Each is JSON checked
 * with a zod schema; a version that fails is dropped alone, so one bad entry
 * does not cost the rest. Loaded on first use (zod stays out of the SDK's
 * static import graph).
 *
 * @module
 */
import { z } from "zod";
import { ProtocolError } from "../errors.ts";
import { KEY, type Saved, TYPES, type Version, type Wire } from "./_version.ts";

const dec = new TextDecoder();

const count = z.int().min(0);

/** A timestamp (`Hlc` in `hlc.ts`): whole non-negative time and counter, a node id of at most 128 characters. */
const HlcSchema = z.looseObject({ t: count, c: count, n: z.string().max(128) });

/** A version; fields of later formats are kept (and passed on in snapshots). */
const VersionSchema = z.looseObject({
  k: z.string().regex(KEY),
  y: z.string().refine((y) => TYPES.has(y), "unknown entry type"),
  h: HlcSchema,
  a: z.string(),
  an: z.string(),
  v: z.unknown().optional(),
  s: z.record(z.string(), z.string()).optional(),
  x: z.number().optional(),
  to: z.string().optional(),
  d: z.literal(1).optional(),
});

/** Every message has a version and an operation; an operation not known here is ignored. */
const EnvelopeSchema = z.looseObject({ v: z.literal(1), op: z.string() });

const WireSchemas = {
  put: z.looseObject({ v: z.literal(1), op: z.literal("put"), e: z.array(z.unknown()) }),
  sync: z.looseObject({ v: z.literal(1), op: z.literal("sync"), id: z.string() }),
  snap: z.looseObject({
    v: z.literal(1),
    op: z.literal("snap"),
    id: z.string(),
    to: z.string(),
    box: z.string(),
  }),
} as const;

/** The store blob; a clock that is not one is left out (the wall clock takes over). */
const SavedSchema = z.looseObject({
  entries: z.array(z.unknown()).optional(),
  outbox: z.array(z.unknown()).optional(),
  clock: z.looseObject({ t: count, c: count }).optional().catch(undefined),
});

/** What was wrong, for an error message: the first issue and where. */
function issue(e: z.ZodError): string {
  const first = e.issues[0];
  if (first === undefined) return "it does not match";
  return first.path.length > 0 ? `${first.path.join(".")}: ${first.message}` : first.message;
}

function json(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(dec.decode(bytes));
  } catch (e) {
    throw new ProtocolError(`The ${what} is not JSON`, { cause: e });
  }
}

/**
 * The well-formed versions among `items`; the others are dropped.
 *
 * @param items Values that should be versions.
 * @returns The versions.
 */
export function versions(items: unknown[]): Version[] {
  const out: Version[] = [];
  for (const item of items) {
    const r = VersionSchema.safeParse(item);
    if (r.success) out.push(r.data as Version);
  }
  return out;
}

/**
 * Parses a `ctx` message from another member.
 *
 * @param bytes The message's body.
 * @returns The message (a put's entries are its well-formed versions), or
 *   `undefined` for an operation this version does not know.
 * @throws {ProtocolError} `protocol` if it is not JSON or not a well-formed message.
 */
export function parseWire(bytes: Uint8Array): Wire | undefined {
  const raw = json(bytes, "context message");
  const head = EnvelopeSchema.safeParse(raw);
  if (!head.success) {
    throw new ProtocolError(`Not a version 1 context message (${issue(head.error)})`);
  }
  const op = head.data.op;
  if (!Object.hasOwn(WireSchemas, op)) return undefined;
  const r = WireSchemas[op as keyof typeof WireSchemas].safeParse(raw);
  if (!r.success) {
    throw new ProtocolError(`Malformed context "${op}" message (${issue(r.error)})`);
  }
  return r.data.op === "put" ? { v: 1, op: "put", e: versions(r.data.e) } : r.data as Wire;
}

/**
 * Parses an opened snapshot part: a JSON array of versions.
 *
 * @param bytes The opened box.
 * @returns Its well-formed versions.
 * @throws {ProtocolError} `protocol` if it is not a JSON array.
 */
export function parseSnapshot(bytes: Uint8Array): Version[] {
  const raw = json(bytes, "context snapshot");
  if (!Array.isArray(raw)) throw new ProtocolError("A context snapshot is no array");
  return versions(raw);
}

/** What a channel's context blob holds. */
export interface Loaded {
  /** The current version of each key. */
  entries: Version[];
  /** This member's writes not yet taken by the relay. */
  outbox: Version[];
  /** The clock's greatest time, if the blob has a valid one. */
  clock?: Saved["clock"];
}

/**
 * Parses the store blob of a channel's context.
 *
 * @param bytes The blob.
 * @returns What it holds (its well-formed versions), or why it is unreadable.
 */
export function parseSaved(bytes: Uint8Array): Loaded | { unreadable: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(dec.decode(bytes));
  } catch {
    return { unreadable: "it is not JSON" };
  }
  const r = SavedSchema.safeParse(raw);
  if (!r.success) return { unreadable: issue(r.error) };
  const loaded: Loaded = {
    entries: versions(r.data.entries ?? []),
    outbox: versions(r.data.outbox ?? []),
  };
  if (r.data.clock) loaded.clock = { t: r.data.clock.t, c: r.data.clock.c };
  return loaded;
}
