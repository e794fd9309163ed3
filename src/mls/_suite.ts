/**
 * What every engine operation works with: the ciphersuite's name and
 * implementation and the ts-mls client config, and the check that a group
 * belongs to that suite before its state is used.
 *
 * @module
 */
import {
  type CiphersuiteImpl,
  type ClientConfig,
  type ClientState,
  defaultAuthenticationService,
  defaultKeyPackageEqualityConfig,
  defaultKeyRetentionConfig,
  defaultLifetimeConfig,
  defaultPaddingConfig,
} from "ts-mls";
import { ValidationError } from "../errors.ts";
import { type Group, groupState } from "./group.ts";

/** One engine's ciphersuite: its name, implementation and client config. */
export interface Suite {
  /** The ciphersuite name. */
  readonly name: string;
  /** ts-mls' implementation of it. */
  readonly cs: CiphersuiteImpl;
  /** The client config every group of this engine uses. */
  readonly config: ClientConfig;
}

/**
 * Makes the suite an engine works with.
 *
 * @param name The ciphersuite name.
 * @param cs Its implementation.
 * @returns The suite, with ts-mls' default client config.
 */
export function makeSuite(name: string, cs: CiphersuiteImpl): Suite {
  return {
    name,
    cs,
    config: {
      keyRetentionConfig: defaultKeyRetentionConfig,
      lifetimeConfig: defaultLifetimeConfig,
      keyPackageEqualityConfig: defaultKeyPackageEqualityConfig,
      paddingConfig: defaultPaddingConfig,
      authService: defaultAuthenticationService,
    },
  };
}

/**
 * The state of a group of this suite.
 *
 * @param suite The engine's suite.
 * @param g The group.
 * @returns Its ts-mls state.
 * @throws {ValidationError} `invalid_argument` if `g` is no group or of another suite.
 */
export function stateOf(suite: Suite, g: Group): ClientState {
  const state = groupState(g);
  if (state.groupContext.cipherSuite !== suite.name) {
    throw new ValidationError(
      "invalid_argument",
      `Group uses ciphersuite "${state.groupContext.cipherSuite}", this engine "${suite.name}"`,
    );
  }
  return state;
}
