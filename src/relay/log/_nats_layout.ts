/**
 * How {@linkcode NatsLog} names and stores things: the hash that names a
 * channel's or a mailbox's subject and stream, and the headers that carry a
 * channel entry (`Sky-Seq`, `Sky-Epoch`, `Sky-Chan-Epoch`, `Sky-Kind`,
 * `Sky-Time`, `Sky-Id`).
 *
 * @module
 */
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import { sha256Hex } from "../../_util.ts";
import { fromHex } from "../../validate.ts";
import type { AppendInput, LogEntry } from "./types.ts";
import { kindCode, kindOf } from "./_shared.ts";

/**
 * The first 32 hex digits of SHA-256 of a name: what subjects and streams use.
 *
 * @param s The channel name or mailbox address.
 * @returns The hash.
 */
export async function nameHash(s: string): Promise<string> {
  return (await sha256Hex(new TextEncoder().encode(s))).slice(0, 32);
}

/**
 * The entry a stored message holds (`undefined` for the creation marker).
 *
 * @param h The message headers.
 * @param data The message data (the payload).
 * @returns The entry.
 */
export function entryOf(h: MsgHdrs | undefined, data: Uint8Array): LogEntry | undefined {
  const seq = h?.get("Sky-Seq");
  if (!h || !seq) return undefined;
  return {
    seq: Number(seq),
    epoch: Number(h.get("Sky-Epoch")),
    kind: kindOf(Number(h.get("Sky-Kind"))),
    id: fromHex(h.get("Sky-Id"), "entry id"),
    time: Number(h.get("Sky-Time")),
    payload: data,
  };
}

/**
 * The headers of an entry appended at `seq`.
 *
 * @param e The entry.
 * @param seq Its channel seq.
 * @param chanEpoch The channel's epoch after it.
 * @returns The headers.
 */
export function entryHeaders(e: AppendInput, seq: number, chanEpoch: number): MsgHdrs {
  const hd = natsHeaders();
  hd.set("Sky-Seq", String(seq));
  hd.set("Sky-Epoch", String(e.epoch));
  hd.set("Sky-Chan-Epoch", String(chanEpoch));
  hd.set("Sky-Kind", String(kindCode(e.kind)));
  hd.set("Sky-Time", String(e.time));
  hd.set("Sky-Id", e.id.toHex());
  return hd;
}
