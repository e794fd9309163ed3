/**
 * What the relay logs (memory, SQLite, NATS) share: the stored code of an
 * entry kind and the page budget of a mailbox take.
 *
 * @module
 */
import type { EntryKind } from "../protocol.ts";
import { fitsPage, type MailboxPage } from "./types.ts";

/** Entry kinds by their stored code (SQLite column, NATS header): the index is the code. */
const KINDS: readonly EntryKind[] = ["application", "commit", "proposal", "genesis"];

/**
 * The stored code of an entry kind.
 *
 * @param kind The kind.
 * @returns Its code (0 to 3).
 */
export function kindCode(kind: EntryKind): number {
  return KINDS.indexOf(kind);
}

/**
 * The entry kind a stored code names (`application` for an unknown one).
 *
 * @param code The code.
 * @returns The kind.
 */
export function kindOf(code: number): EntryKind {
  return KINDS[code] ?? "application";
}

/**
 * The items a mailbox take hands out fill one frame: at least one item, then
 * as many as fit (see {@linkcode fitsPage}).
 */
export class PageBudget {
  readonly #page: MailboxPage | undefined;
  #count = 0;
  #used = 0;

  /**
   * Creates it.
   *
   * @param page The page limits (`undefined`: no limit).
   */
  constructor(page: MailboxPage | undefined) {
    this.#page = page;
  }

  /**
   * Whether an item of this many payload bytes still fits.
   *
   * @param payloadBytes The item's payload size.
   * @returns `true` if it fits.
   */
  fits(payloadBytes: number): boolean {
    return fitsPage(this.#page, this.#count, this.#used, payloadBytes);
  }

  /**
   * Counts an item handed out.
   *
   * @param payloadBytes The item's payload size.
   */
  add(payloadBytes: number): void {
    this.#count++;
    this.#used += payloadBytes + (this.#page?.perItemBytes ?? 0);
  }
}
