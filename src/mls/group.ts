/**
 * The opaque {@linkcode Group}: one member's view of one MLS group at one
 * epoch. Only the engine's modules open it ({@linkcode groupState}) or make
 * one ({@linkcode wrapGroup}); to everyone else it is a token to hand back.
 *
 * @module
 */
import type { ClientState } from "ts-mls";
import { ValidationError } from "../errors.ts";

let wrap: (state: ClientState) => Group;
let unwrap: (group: Group) => ClientState;

/**
 * One member's view of one MLS group at one epoch. It is immutable and opaque:
 * every `MlsEngine` operation takes a `Group` and returns a new one, and
 * `MlsEngine.encodeGroup` turns it into bytes for persistence.
 * It holds secrets; `JSON.stringify` shows none of them.
 */
export class Group {
  #state: ClientState;

  private constructor(state: ClientState) {
    this.#state = state;
    Object.freeze(this);
  }

  static {
    wrap = (state) => new Group(state);
    unwrap = (group) => {
      if (typeof group !== "object" || group === null || !(#state in group)) {
        throw new ValidationError("invalid_argument", "Expected a Group from MlsEngine");
      }
      return group.#state;
    };
  }
}

/**
 * Makes a {@linkcode Group} of a ts-mls state (the engine's modules only).
 *
 * @param state The state.
 * @returns The group holding it.
 */
export function wrapGroup(state: ClientState): Group {
  return wrap(state);
}

/**
 * The ts-mls state inside a {@linkcode Group} (the engine's modules only).
 *
 * @param group The group.
 * @returns Its state.
 * @throws {ValidationError} `invalid_argument` if `group` is not a `Group`.
 */
export function groupState(group: Group): ClientState {
  return unwrap(group);
}
