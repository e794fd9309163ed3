/**
 * The argument schemas the Skytale tools share: a channel name, a
 * ciphersuite, a hex blob, a wait's timeout. Each schema's messages say what
 * to pass instead, since a model reads them. The tool names are in
 * `_names.ts` (re-exported here).
 *
 * @module
 */
import { z } from "zod";
import { CHANNEL_PATTERN } from "../../validate.ts";
import { CHANNEL_HINT, MAX_RECEIVE_TIMEOUT, PQ_SUITE } from "./_names.ts";

export { CHANNEL_HINT, MAX_RECEIVE_TIMEOUT, PQ_SUITE, type ToolName, ToolNames } from "./_names.ts";

const HEX_PATTERN = /^\s*[0-9a-fA-F]+\s*$/;

/** The `channel` argument of the channel tools. */
export const channelArg = z
  .string({ error: `channel is required: pass ${CHANNEL_HINT}` })
  .max(255, { error: "channel is too long: use at most 255 characters" })
  .regex(CHANNEL_PATTERN, {
    error:
      `channel must be ${CHANNEL_HINT} (three non-empty parts of letters, digits, ".", "_" or "-")`,
  })
  .describe(`The channel, ${CHANNEL_HINT}`);

/** The shorter-worded `channel` argument of the shared-context and audit tools. */
export const shortChannelArg = z
  .string({ error: 'channel is required: pass a name "org/namespace/service"' })
  .regex(CHANNEL_PATTERN, {
    error: 'channel must be "org/namespace/service", e.g. "acme/research/results"',
  })
  .describe('The channel, "org/namespace/service"');

/** The optional `ciphersuite` argument. */
export const ciphersuiteArg = z
  .string({ error: "ciphersuite must be a string naming an MLS ciphersuite" })
  .max(120, { error: "ciphersuite is too long to be a ciphersuite name" })
  .regex(/^MLS_[A-Za-z0-9_]+$/, {
    error: `ciphersuite must be an MLS ciphersuite name, e.g. "${PQ_SUITE}"`,
  })
  .optional()
  .describe(
    `The MLS ciphersuite (default: the server's, X25519/AES-128-GCM/Ed25519). "${PQ_SUITE}" is post-quantum.`,
  );

/**
 * A hex argument that one tool returned and another takes.
 *
 * @param what The argument's name.
 * @param from The tool (and side) that returns it.
 * @returns The schema.
 */
export function hexArg(what: string, from: string) {
  return z
    .string({ error: `${what} is required: pass the hex string returned by ${from}` })
    .max(4_000_000, { error: `${what} is too long to be a valid hex ${what}` })
    .regex(HEX_PATTERN, {
      error: `${what} must be hex digits only (0-9, a-f), exactly as returned by ${from}`,
    });
}

/**
 * The `timeout` of a wait: seconds from 0 to {@linkcode MAX_RECEIVE_TIMEOUT}, default 5.
 *
 * @param description What the seconds wait for.
 * @returns The schema.
 */
export function waitTimeoutArg(description: string) {
  return z
    .number({ error: `timeout must be a number of seconds from 0 to ${MAX_RECEIVE_TIMEOUT}` })
    .min(0, { error: "timeout must not be negative: pass 0 to return at once" })
    .max(MAX_RECEIVE_TIMEOUT, {
      error: `timeout must be at most ${MAX_RECEIVE_TIMEOUT} seconds: call again to keep waiting`,
    })
    .default(5)
    .describe(description);
}
