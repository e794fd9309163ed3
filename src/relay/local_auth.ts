/**
 * The embedded local relay is the user's alone (DESIGN invariant 7). Every
 * Skytale process of a user shares one random 32-byte secret, `local.key` in
 * `$SKYTALE_HOME` (0600), and each connection to the local relay proves both
 * ways that its two ends hold it, without showing it to the other end:
 *
 * 1. client → `hello`, token `skytale-local-v1.<c>`: `c` is 16 random bytes (hex).
 * 2. relay → `helloOk` with the connection's nonce `r` and
 *    `proof = HMAC-SHA-256(K, "skytale local relay v1\0" ‖ port ‖ c ‖ r)`.
 *    The connection is not authenticated yet.
 * 3. The client checks `proof` *before* it sends anything computed from `K`,
 *    so a process that squats the port learns nothing but `c` and is refused
 *    (`AuthError` naming the port). Then client → `hello`, token
 *    `skytale-local-v1.<c>.<HMAC-SHA-256(K, "skytale local client v1\0" ‖ port ‖ c ‖ r)>`.
 * 4. The relay checks it and answers `helloOk`: the connection may now work.
 *
 * `port` is the loopback port as a big-endian u16, so an answer made for one
 * port is worthless on another; `r` is fresh per connection, so a client's
 * answer cannot be replayed, and `c` is fresh per attempt, so a relay's proof
 * cannot either. The two contexts keep a relay's proof from serving as a
 * client's answer and back. Membership proofs (`prove`) then sign the same `r`.
 *
 * @module
 */
import { AuthError, ProtocolError, StateError } from "../errors.ts";
import { randomBytes } from "../_util.ts";
import { joinPath, readOrCreateSecret } from "../runtime/fs.ts";
import type { FrameOf } from "./protocol.ts";
import type { HelloContext, RelaySession } from "./server.ts";

/** The length of `local.key`, in bytes. */
export const LOCAL_KEY_BYTES = 32;
/** What every hello token of the local handshake starts with. */
export const LOCAL_TOKEN_PREFIX = "skytale-local-v1.";

/** Who makes a proof: the relay (step 2) or the client (step 3). */
export type ProofSide = "relay" | "client";

/** Each side's context: a relay's proof can never serve as a client's answer, nor back. */
const CONTEXTS: Readonly<Record<ProofSide, Uint8Array>> = {
  relay: new TextEncoder().encode("skytale local relay v1\0"),
  client: new TextEncoder().encode("skytale local client v1\0"),
};
const CHALLENGE_BYTES = 16;
const MAC_BYTES = 32;
const HEX = /^[0-9a-f]*$/;

/** The user's local secret, as an HMAC key that cannot be exported. */
export class LocalSecret {
  /** Where the secret lives (`$SKYTALE_HOME/local.key`). */
  readonly file: string;
  readonly #key: CryptoKey;

  private constructor(file: string, key: CryptoKey) {
    this.file = file;
    this.#key = key;
  }

  /**
   * Reads `<home>/local.key`, creating it (atomically, 0600 in a 0700
   * directory) on first use.
   *
   * @param home The user's Skytale home (`$SKYTALE_HOME`).
   * @returns The secret.
   * @throws {StateError} `state_corrupt` if the file is not 32 bytes long.
   */
  static async load(home: string): Promise<LocalSecret> {
    const file = joinPath(home, "local.key");
    const bytes = await readOrCreateSecret(file, LOCAL_KEY_BYTES);
    if (bytes.length !== LOCAL_KEY_BYTES) {
      throw new StateError(
        "state_corrupt",
        `The local relay key "${file}" is ${bytes.length} bytes long, not ${LOCAL_KEY_BYTES}: remove it and restart every Skytale process of this user`,
      );
    }
    const key = await crypto.subtle.importKey(
      "raw",
      bytes as BufferSource,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    bytes.fill(0);
    return new LocalSecret(file, key);
  }

  /**
   * One side's proof for a connection: HMAC-SHA-256 over that side's context,
   * the port (u16), the client's challenge `c` and the connection's nonce `r`.
   *
   * @param side Who proves: the relay (step 2) or the client (step 3).
   * @param port The local relay's port.
   * @param challenge The client's challenge `c`.
   * @param nonce The connection's nonce `r`.
   * @returns The proof.
   */
  async prove(
    side: ProofSide,
    port: number,
    challenge: Uint8Array,
    nonce: Uint8Array,
  ): Promise<Uint8Array> {
    const data = _macInput(side, port, challenge, nonce);
    return new Uint8Array(await crypto.subtle.sign("HMAC", this.#key, data));
  }

  /**
   * Checks one side's proof (in constant time).
   *
   * @param side Who made it.
   * @param port The local relay's port.
   * @param challenge The client's challenge `c`.
   * @param nonce The connection's nonce `r`.
   * @param proof The proof received.
   * @returns Whether its maker holds the secret.
   */
  async verify(
    side: ProofSide,
    port: number,
    challenge: Uint8Array,
    nonce: Uint8Array,
    proof: Uint8Array,
  ): Promise<boolean> {
    if (proof.length !== MAC_BYTES) return false;
    const data = _macInput(side, port, challenge, nonce);
    return await crypto.subtle.verify("HMAC", this.#key, proof as BufferSource, data);
  }
}

/** The bytes a proof covers: the side's context ‖ port (u16 big-endian) ‖ c ‖ r. */
function _macInput(
  side: ProofSide,
  port: number,
  c: Uint8Array,
  r: Uint8Array,
): Uint8Array<ArrayBuffer> {
  return new Uint8Array([...CONTEXTS[side], port >> 8 & 0xff, port & 0xff, ...c, ...r]);
}

function _fromHex(s: string | undefined, length: number): Uint8Array | undefined {
  if (s === undefined || s.length !== length * 2 || !HEX.test(s)) return undefined;
  return Uint8Array.fromHex(s);
}

/** Parses `skytale-local-v1.<c>[.<answer>]`. */
function _parse(
  token: string | undefined,
): { challenge: Uint8Array; answer?: Uint8Array | undefined } | undefined {
  if (token === undefined || !token.startsWith(LOCAL_TOKEN_PREFIX)) return undefined;
  const parts = token.slice(LOCAL_TOKEN_PREFIX.length).split(".");
  if (parts.length > 2) return undefined;
  const challenge = _fromHex(parts[0], CHALLENGE_BYTES);
  if (!challenge) return undefined;
  if (parts.length === 1) return { challenge };
  const answer = _fromHex(parts[1], MAC_BYTES);
  return answer ? { challenge, answer } : undefined;
}

/**
 * The local relay's `authenticate` hook: steps 2 and 4 of the handshake.
 *
 * @param secret The user's local secret.
 * @param port The port the relay listens on.
 * @returns The hook for `RelayServerOptions.authenticate`.
 */
export function localAuthenticator(
  secret: LocalSecret,
  port: number,
): (token: string | undefined, hello: HelloContext) => Promise<RelaySession> {
  return async (token, { nonce }) => {
    const t = _parse(token);
    if (t === undefined) {
      throw new AuthError(
        "This is a user's local Skytale relay: it serves only that user's Skytale processes, which prove they hold its local.key",
      );
    }
    if (t.answer === undefined) {
      return { incomplete: true, proof: await secret.prove("relay", port, t.challenge, nonce) };
    }
    if (!await secret.verify("client", port, t.challenge, nonce, t.answer)) {
      throw new AuthError(
        "The proof of the local relay's key does not verify: this process does not hold the user's local.key",
      );
    }
    return {};
  };
}

/**
 * The client side of the handshake (steps 1 and 3), for
 * `RelayClientOptions.greet`.
 *
 * @param secret Loads the user's local secret.
 * @param host The loopback host, for error messages.
 * @param port The port connected to.
 * @returns The greet hook.
 */
export function localGreeter(
  secret: () => Promise<LocalSecret>,
  host: string,
  port: number,
): (hello: (token: string) => Promise<FrameOf<"helloOk">>) => Promise<FrameOf<"helloOk">> {
  return async (hello) => {
    const s = await secret();
    const squatter = (why: string, cause?: unknown) =>
      new AuthError(
        `The process listening on ${host}:${port} is not this user's local Skytale relay (${why}). ` +
          `Another program, another user, or a Skytale process with a different SKYTALE_HOME holds the port: ` +
          `stop it, or give all of this user's Skytale processes a free port with SKYTALE_LOCAL_PORT`,
        cause === undefined ? undefined : { cause },
      );
    const challenge = randomBytes(CHALLENGE_BYTES);
    let first: FrameOf<"helloOk">;
    try {
      first = await hello(LOCAL_TOKEN_PREFIX + challenge.toHex());
    } catch (e) {
      if (e instanceof AuthError || e instanceof ProtocolError) {
        throw squatter(`it refused the handshake: ${e.message}`, e);
      }
      throw e;
    }
    if (first.nonce === undefined || first.proof === undefined) {
      throw squatter("it did not answer the local key challenge");
    }
    if (!await s.verify("relay", port, challenge, first.nonce, first.proof)) {
      throw squatter(`its answer to the challenge does not prove it holds "${s.file}"`);
    }
    const answer = await s.prove("client", port, challenge, first.nonce);
    return await hello(`${LOCAL_TOKEN_PREFIX}${challenge.toHex()}.${answer.toHex()}`);
  };
}
