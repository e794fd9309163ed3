/**
 * The client half of relay authentication: it exchanges an API key for
 * short-lived tokens at a relay's token API (`POST /v1/tokens`) and renews
 * them before they expire. It runs wherever `fetch` does (the SDK in a
 * browser included): no runtime module, no crypto library, no server code;
 * the relay side (key store, token signing and checking) is `auth.ts`.
 *
 * @module
 */
import { z } from "zod";
import { AuthError, RelayError, ValidationError } from "../errors.ts";
import { errorMessage } from "../_util.ts";
import { jwtTimes } from "./_jwt.ts";

/** The prefix of every API key. */
export const API_KEY_PREFIX = "sk_live_";
/** The path of the token API. */
export const TOKEN_PATH = "/v1/tokens";

/** A token API answer: `{ token, expires_at, expires_in }` (a bad `expires_in` falls back to the JWT's own). */
const _Issued = z.object({
  token: z.string(),
  expires_in: z.number().optional().catch(undefined),
});
/** A token API refusal: `{ error: { code, reason, message } }`. */
const _Refusal = z.object({ error: z.object({ message: z.string() }) });

/**
 * The token API origin for a relay URL: `ws://h:p/…` → `http://h:p`,
 * `wss://` → `https://` (http(s) URLs keep their scheme).
 *
 * @param relayUrl The relay URL.
 * @returns The origin, without a trailing slash.
 */
export function tokenApiUrl(relayUrl: string): string {
  const u = new URL(relayUrl);
  const scheme = u.protocol === "wss:" || u.protocol === "https:" ? "https:" : "http:";
  return `${scheme}//${u.host}`;
}

/** Options of {@linkcode ApiKeyTokens}. */
export interface ApiKeyTokensOptions {
  /** The API key `sk_live_…`. */
  apiKey: string;
  /** Token API base URLs, tried in order (a relay cluster can list several). */
  apiUrls: string[];
  /** The fetch to use (tests). */
  fetch?: typeof fetch;
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
}

/**
 * The client side of the token API: exchanges an API key for a JWT, caches
 * it and fetches a new one once half its lifetime has passed, so a client
 * that asks before every (re)connect and every hello renewal never presents
 * an expired token.
 */
export class ApiKeyTokens {
  readonly #apiKey: string;
  readonly #urls: string[];
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  #cached: { token: string; renewAt: number; expiresAt: number } | undefined;
  #inflight: Promise<string> | undefined;

  /**
   * Creates it; nothing is fetched until {@linkcode ApiKeyTokens.token}.
   *
   * @param opts The key and where to exchange it.
   */
  constructor(opts: ApiKeyTokensOptions) {
    if (!opts.apiKey.startsWith(API_KEY_PREFIX)) {
      throw new ValidationError(
        "invalid_argument",
        `API key must start with "${API_KEY_PREFIX}", got "${opts.apiKey.slice(0, 8)}…"`,
      );
    }
    if (opts.apiUrls.length === 0) {
      throw new ValidationError("invalid_argument", "At least one token API URL is needed");
    }
    this.#apiKey = opts.apiKey;
    this.#urls = opts.apiUrls.map((u) => u.replace(/\/+$/, ""));
    this.#fetch = opts.fetch ?? fetch;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /**
   * A token valid for at least half its lifetime (fetching one if needed).
   * When the token API cannot be reached, a cached token that has not expired
   * yet is returned instead.
   *
   * @returns The JWT.
   * @throws {AuthError} if the key is refused (unknown or revoked).
   * @throws {RelayError} `relay_unavailable` if no token API answers and no valid token is cached.
   */
  token(): Promise<string> {
    const now = Date.now();
    if (this.#cached && now < this.#cached.renewAt) return Promise.resolve(this.#cached.token);
    this.#inflight ??= this.#fetchToken().finally(() => (this.#inflight = undefined));
    return this.#inflight;
  }

  async #fetchToken(): Promise<string> {
    let lastError: unknown;
    for (const base of this.#urls) {
      const started = Date.now();
      let res: Response;
      try {
        res = await this.#fetch(`${base}${TOKEN_PATH}`, {
          method: "POST",
          headers: { authorization: `Bearer ${this.#apiKey}` },
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      } catch (e) {
        lastError = e;
        continue;
      }
      const body: unknown = await res.json().catch(() => undefined);
      if (res.status === 401 || res.status === 403) {
        this.#cached = undefined;
        const refusal = _Refusal.safeParse(body);
        throw new AuthError(
          `The relay refused the API key: ${
            refusal.success ? refusal.data.error.message : `HTTP ${res.status}`
          }`,
        );
      }
      const issued = _Issued.safeParse(body);
      if (!res.ok || !issued.success) {
        const why = res.ok ? "an answer without a token" : `HTTP ${res.status}`;
        lastError = new RelayError("relay_unavailable", `${why} from "${base}${TOKEN_PATH}"`);
        continue;
      }
      const { token, expires_in } = issued.data;
      let lifetimeMs = (expires_in ?? 0) * 1000;
      if (!(lifetimeMs > 0)) {
        const times = jwtTimes(token);
        if (times === undefined) {
          lastError = new RelayError(
            "relay_unavailable",
            `a token with no expiry from "${base}${TOKEN_PATH}"`,
          );
          continue;
        }
        lifetimeMs = times.lifetimeMs;
      }
      // Measured on the local clock from when the request was sent: immune to clock skew.
      this.#cached = { token, renewAt: started + lifetimeMs / 2, expiresAt: started + lifetimeMs };
      return token;
    }
    if (this.#cached && Date.now() < this.#cached.expiresAt - 1000) return this.#cached.token;
    throw new RelayError(
      "relay_unavailable",
      `Cannot reach the token API at "${this.#urls.join(", ")}": ${errorMessage(lastError)}`,
      { cause: lastError },
    );
  }
}
