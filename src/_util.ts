/**
 * Small helpers every layer needs, written once: byte comparison (in constant
 * time where the bytes are secret), SHA-256, random ids, error text, sleeping, backoff and deadlines.
 * Nothing here imports a runtime module, so the SDK's browser graph may use it.
 *
 * @module
 */

/** True when `a` and `b` hold the same bytes; the time taken depends only on their lengths. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** True when `a` and `b` hold the same bytes (public ones: it stops at the first difference). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** SHA-256 of `data` (WebCrypto). */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
}

/** SHA-256 of `data` as lowercase hex. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  return (await sha256(data)).toHex();
}

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** `n` random bytes as lowercase hex (`2n` characters). */
export function randomHex(n: number): string {
  return randomBytes(n).toHex();
}

/** The text of anything thrown: an `Error`'s message, or the value as a string. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves after `ms` milliseconds, or at once when `signal` is (or becomes) aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Exponential backoff: `base · 2^attempt` milliseconds, at most `cap`. */
export function backoff(attempt: number, base: number, cap: number): number {
  return Math.min(cap, base * 2 ** attempt);
}

/**
 * Settles as `work` does, or rejects with `onTimeout()` once `ms` milliseconds
 * have passed first. The timer never outlives the race.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
