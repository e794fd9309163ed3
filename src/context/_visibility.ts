/**
 * Restricted visibility: an entry with `visibleTo` carries its value's JSON
 * sealed with HPKE (`src/seal.ts`) to each reader's did, bound to the
 * channel, key, timestamp and reader; a joiner's snapshot is sealed to the
 * joiner the same way. Other members and the relay hold only the boxes.
 *
 * @module
 */
import type { Version } from "./_version.ts";
import type { ContextHost } from "./types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const VALUE_INFO = enc.encode("skytale context value v1");
const SNAPSHOT_INFO = enc.encode("skytale context snapshot v1");

/** HPKE sealing (and the crypto it loads) on first use only: not on the MCP server's start-up. */
function sealing(): Promise<typeof import("../seal.ts")> {
  return import("../seal.ts");
}

function valueAad(channel: string, v: Version, did: string): Uint8Array {
  return enc.encode(JSON.stringify([channel, v.k, v.h.t, v.h.c, v.h.n, did]));
}

function snapshotAad(channel: string, id: string, to: string): Uint8Array {
  return enc.encode(JSON.stringify([channel, id, to]));
}

/**
 * Seals a value to its readers.
 *
 * @param channel The channel.
 * @param v The version it is the value of (its key and timestamp are bound in).
 * @param json The value's JSON.
 * @param dids The readers.
 * @returns Reader did → base64 box.
 */
export async function sealValue(
  channel: string,
  v: Version,
  json: string,
  dids: string[],
): Promise<Record<string, string>> {
  const { sealBox, didBoxKey } = await sealing();
  const pt = enc.encode(json);
  const boxes: Record<string, string> = {};
  for (const did of dids) {
    boxes[did] = (await sealBox(didBoxKey(did), pt, VALUE_INFO, valueAad(channel, v, did)))
      .toBase64();
  }
  return boxes;
}

/**
 * Opens a sealed value with this member's key.
 *
 * @param host The channel manager (it holds the key).
 * @param channel The channel.
 * @param v The version, with its boxes.
 * @param did This member's did.
 * @returns The value, or `undefined` if none is sealed to this member or it does not open.
 */
export async function openValue(
  host: ContextHost,
  channel: string,
  v: Version,
  did: string,
): Promise<{ value: unknown } | undefined> {
  const box = v.s?.[did];
  if (box === undefined) return undefined;
  try {
    const pt = await host.openSealed(
      Uint8Array.fromBase64(box),
      VALUE_INFO,
      valueAad(channel, v, did),
    );
    return { value: JSON.parse(dec.decode(pt)) };
  } catch {
    return undefined; // not sealed to this member after all
  }
}

/**
 * Seals one part of a snapshot to a joiner.
 *
 * @param channel The channel.
 * @param id The joiner's sync request id.
 * @param to The joiner's did.
 * @param part The versions.
 * @returns The base64 box.
 */
export async function sealSnapshot(
  channel: string,
  id: string,
  to: string,
  part: Version[],
): Promise<string> {
  const { sealBox, didBoxKey } = await sealing();
  const box = await sealBox(
    didBoxKey(to),
    enc.encode(JSON.stringify(part)),
    SNAPSHOT_INFO,
    snapshotAad(channel, id, to),
  );
  return box.toBase64();
}

/**
 * Opens a snapshot part sealed to this member.
 *
 * @param host The channel manager (it holds the key).
 * @param channel The channel.
 * @param id The sync request id.
 * @param to This member's did.
 * @param box The base64 box.
 * @returns The part's JSON bytes.
 */
export async function openSnapshot(
  host: ContextHost,
  channel: string,
  id: string,
  to: string,
  box: string,
): Promise<Uint8Array> {
  return await host.openSealed(
    Uint8Array.fromBase64(box),
    SNAPSHOT_INFO,
    snapshotAad(channel, id, to),
  );
}
