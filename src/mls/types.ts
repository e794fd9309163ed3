/**
 * The MLS engine's public types: what a crypto provider is, the engine's
 * options, a key package bundle and what processing a message finds. Apart
 * from `engine.ts` so the provider (`provider.ts`), which the engine loads,
 * can name them without importing the engine back.
 *
 * @module
 */
import type { Group } from "./group.ts";

/**
 * Where ciphersuite implementations come from: structurally a ts-mls
 * `CryptoProvider` (e.g. ts-mls' `nobleCryptoProvider`), typed loosely here so
 * ts-mls types stay out of the public API.
 */
export interface MlsCryptoProvider {
  /**
   * Builds one ciphersuite's implementation.
   *
   * @param suite A ts-mls `Ciphersuite` description (its `name` is the suite name).
   * @returns A ts-mls `CiphersuiteImpl`.
   */
  getCiphersuiteImpl(suite: { readonly name: string }): Promise<object>;
}

/** Options for `MlsEngine.create`. */
export interface MlsEngineOptions {
  /**
   * The crypto provider; `fastCryptoProvider` from `./provider.ts` when left
   * out (`tsMlsDefaultProvider` there is ts-mls' own, for comparison).
   */
  provider?: MlsCryptoProvider;
}

/** A key package as produced by `MlsEngine.newKeyPackage`. */
export interface KeyPackageBundle {
  /** The MLSMessage-encoded public key package (what is shared, as hex). */
  keyPackage: Uint8Array;
  /** Opaque private half; with `keyPackage` it lets `MlsEngine.join` use it later. */
  privateKey: Uint8Array;
  /** The hex KeyPackageRef. */
  ref: string;
}

/** What `MlsEngine.process` found in a message. */
export type ProcessResult =
  | {
    /** An application message. */
    kind: "application";
    /** The identity in the credential of the sending leaf. */
    sender: string;
    /** The did of the sending leaf's signature key. */
    senderId: string;
    /** The plaintext. */
    data: Uint8Array;
    /** The message's MLS authenticated data (signed, not encrypted; empty from most senders). */
    aad: Uint8Array;
    /** The group after the message. */
    newGroup: Group;
  }
  | {
    /** A commit, applied. */
    kind: "commit";
    /** The group at the next epoch. */
    newGroup: Group;
    /** Whether this member was removed by the commit (it is no longer in the group). */
    removed: boolean;
  }
  | {
    /** A proposal, stored until a commit covers it. */
    kind: "proposal";
    /** The group with the proposal pending. */
    newGroup: Group;
    /** The identity in the credential of the proposing leaf. */
    sender: string;
    /** The did of the proposing leaf's signature key. */
    senderId: string;
  };
