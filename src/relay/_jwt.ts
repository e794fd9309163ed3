/**
 * Reads the times of a JWT without verifying it: the client side only needs
 * to know when to renew a token, and leaves checking it to the relay. No
 * crypto library, so the SDK's client half stays small and browser-safe.
 *
 * @module
 */
import { z } from "zod";

const _Claims = z.object({ exp: z.number(), iat: z.number().optional() });

/**
 * The lifetime and expiry of a JWT, from its unverified claims.
 *
 * @param token The token.
 * @returns Its lifetime (`exp - iat`, an hour when `iat` is missing) and expiry in ms since
 *   the Unix epoch; `undefined` if it is not a JWT with a numeric `exp`.
 */
export function jwtTimes(token: string): { lifetimeMs: number; expiresAt: number } | undefined {
  const part = token.split(".")[1];
  if (part === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(atob(part.replaceAll("-", "+").replaceAll("_", "/")));
  } catch {
    return undefined;
  }
  const c = _Claims.safeParse(json);
  if (!c.success) return undefined;
  const { exp, iat = exp - 3600 } = c.data;
  return { lifetimeMs: (exp - iat) * 1000, expiresAt: exp * 1000 };
}
