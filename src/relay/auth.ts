/**
 * Relay authentication, the relay's side: short-lived JWTs and the token API.
 *
 * - **API keys** `sk_live_…` belong to one organisation; the relay keeps only
 *   their hashes (`auth_keys.ts`: {@linkcode ApiKeyStore}, {@linkcode KeyStore}).
 * - **Tokens** are JWTs signed with EdDSA (Ed25519) by a key the first relay
 *   creates and every relay then reads from a {@linkcode SigningKeyStore}:
 *   `signing-key.jwk` (mode 0600) in the data dir, or NATS. Claims:
 *   `iss` `skytale-relay`, `sub` the API key id, `org`, `iat`, `exp`, `jti`.
 *   Lifetime: 1 hour unless configured.
 * - **Token API** `POST /v1/tokens` with `Authorization: Bearer sk_live_…`
 *   answers `{ token, expires_at, expires_in }`; a missing, unknown or revoked
 *   key gets `401 { error: { code: "auth", reason, message } }`. Each refusal is
 *   logged (never the key) and counted (`skytale_token_failures_total`); after
 *   `maxFailures` refusals in a window from one address, or for one presented
 *   key, further requests from it get `429` with `Retry-After` until the
 *   window ends, right key or not, so guessing keys costs a window per ten.
 * - **Hello**: {@linkcode RelayAuth.authenticate} checks the signature, the
 *   expiry, that the key was not revoked since, and that the token's org is
 *   its key's org (a token signed for another org is refused); the connection is then
 *   scoped to the token's org until the token expires (a client re-sends
 *   `hello` with a fresh token on the same connection to extend it).
 *
 * The client side, which exchanges an API key for tokens and renews them
 * ({@linkcode ApiKeyTokens}), is `auth_client.ts`: it has none of this
 * module's dependencies, so the SDK can load it in a browser.
 *
 * @module
 */
import {
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
} from "jose";
import { z } from "zod";
import { AuthError, StateError, ValidationError } from "../errors.ts";
import { randomHex } from "../_util.ts";
import { jsonLog, type RelayLogger, type RelaySession } from "./server.ts";
import { TOKEN_PATH } from "./auth_client.ts";
import {
  type ApiKeyStore,
  checkOrg,
  FileSigningKey,
  hashApiKey,
  KeyStore,
  type SigningKeyStore,
} from "./auth_keys.ts";

export {
  API_KEY_PREFIX,
  ApiKeyTokens,
  type ApiKeyTokensOptions,
  TOKEN_PATH,
  tokenApiUrl,
} from "./auth_client.ts";
export {
  apiKeyHash,
  type ApiKeyInfo,
  type ApiKeyStore,
  checkOrg,
  FileSigningKey,
  KeyStore,
  newApiKey,
  type SigningKeyStore,
} from "./auth_keys.ts";

/** The default token lifetime, in seconds. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;
/** Refused token requests tolerated per address (and per presented key) in a window. */
export const DEFAULT_TOKEN_MAX_FAILURES = 10;
/** The token throttle's window, in seconds. */
export const DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS = 60;
/** How many addresses and keys the throttle remembers at most (oldest forgotten first). */
const MAX_THROTTLE_ENTRIES = 100_000;

type _Key = Awaited<ReturnType<typeof importJWK>>;

const ISSUER = "skytale-relay";
const ALG = "EdDSA";

/** The stored signing key: an Ed25519 private JWK (what `_signingKey` writes). */
const _PrivateJwk = z.object({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().min(1),
  d: z.string().min(1),
  kid: z.string().optional(),
});

async function _signingKey(
  store: SigningKeyStore,
): Promise<{ priv: _Key; pub: _Key; kid: string }> {
  const text = await store.loadOrCreate(async () => {
    const { privateKey } = await generateKeyPair(ALG, { crv: "Ed25519", extractable: true });
    return JSON.stringify({
      ...await exportJWK(privateKey),
      alg: ALG,
      kid: randomHex(8),
    });
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new StateError("state_corrupt", `Signing key "${store.where}" is not JSON`, {
      cause: e,
    });
  }
  const parsed = _PrivateJwk.safeParse(json);
  if (!parsed.success) {
    throw new StateError(
      "state_corrupt",
      `Signing key "${store.where}" is not an Ed25519 private JWK`,
      { cause: parsed.error },
    );
  }
  const jwk = parsed.data;
  const priv = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d }, ALG);
  const pub = await importJWK({ kty: "OKP", crv: "Ed25519", x: jwk.x }, ALG);
  return { priv, pub, kid: jwk.kid ?? "" };
}

/** Options of {@linkcode RelayAuth.open}. */
export interface RelayAuthOptions {
  /** The relay's data dir (holds `auth.db` and `signing-key.jwk` unless the stores below are given). */
  dataDir?: string;
  /** Where the API keys are (default: `auth.db` in `dataDir`); closed with the authenticator. */
  keys?: ApiKeyStore;
  /** Where the signing key is (default: `signing-key.jwk` in `dataDir`). */
  signingKey?: SigningKeyStore;
  /** Token lifetime in seconds (default 3600). */
  tokenLifetimeSeconds?: number;
  /**
   * Refused token requests per address, and per presented key, in a window
   * before the rest get 429 (default {@linkcode DEFAULT_TOKEN_MAX_FAILURES}).
   */
  maxTokenFailures?: number;
  /** The throttle window in seconds (default {@linkcode DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS}). */
  tokenFailureWindowSeconds?: number;
  /** Where log lines go (default the relay's JSON lines on stderr). */
  logger?: RelayLogger;
  /** The clock, in ms since the Unix epoch (tests). */
  now?: () => number;
}

/** A token as the token API returns it. */
export interface IssuedToken {
  /** The JWT. */
  token: string;
  /** When it expires, in ms since the Unix epoch. */
  expiresAt: number;
}

function _json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

function _whole(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ValidationError(
      "invalid_argument",
      `${name} must be a whole number of at least 1, got "${n}"`,
    );
  }
  return n;
}

/** The relay side of authentication: issues tokens for API keys and checks them at hello. */
export class RelayAuth {
  /** The key store. */
  readonly keys: ApiKeyStore;
  /** Token lifetime in seconds. */
  readonly tokenLifetimeSeconds: number;
  #priv: _Key;
  #pub: _Key;
  #kid: string;
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #logger: RelayLogger;
  readonly #now: () => number;
  /** `ip:<address>` or `key:<hash prefix>` → refusals in the current window. */
  readonly #failures = new Map<string, { count: number; resetAt: number }>();
  #failed = 0;
  #throttled = 0;

  private constructor(
    keys: ApiKeyStore,
    k: { priv: _Key; pub: _Key; kid: string },
    lifetime: number,
    opts: RelayAuthOptions,
  ) {
    this.keys = keys;
    this.#priv = k.priv;
    this.#pub = k.pub;
    this.#kid = k.kid;
    this.tokenLifetimeSeconds = lifetime;
    this.#maxFailures = opts.maxTokenFailures ?? DEFAULT_TOKEN_MAX_FAILURES;
    this.#windowMs = (opts.tokenFailureWindowSeconds ?? DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS) *
      1000;
    this.#logger = opts.logger ?? jsonLog;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Opens the key store and loads (or creates) the signing key.
   *
   * @param opts The data dir or the stores, and the token lifetime.
   * @returns The authenticator.
   * @throws {StateError} `state_corrupt` if the signing key is unreadable.
   * @throws {ValidationError} `invalid_argument` without a data dir or both stores.
   */
  static async open(opts: RelayAuthOptions): Promise<RelayAuth> {
    const lifetime = opts.tokenLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS;
    if (!Number.isInteger(lifetime) || lifetime < 1) {
      throw new ValidationError(
        "invalid_argument",
        `Token lifetime must be a whole number of seconds, got "${lifetime}"`,
      );
    }
    _whole("maxTokenFailures", opts.maxTokenFailures ?? DEFAULT_TOKEN_MAX_FAILURES);
    _whole(
      "tokenFailureWindowSeconds",
      opts.tokenFailureWindowSeconds ?? DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS,
    );
    const { dataDir } = opts;
    if (dataDir === undefined && (!opts.keys || !opts.signingKey)) {
      throw new ValidationError("invalid_argument", "RelayAuth needs a data dir or both stores");
    }
    const keys = opts.keys ?? await KeyStore.open(dataDir!);
    try {
      const signing = opts.signingKey ?? new FileSigningKey(dataDir!);
      return new RelayAuth(keys, await _signingKey(signing), lifetime, opts);
    } catch (e) {
      await keys.close();
      throw e;
    }
  }

  /**
   * Exchanges an API key for a token.
   *
   * @param apiKey The presented key.
   * @returns The token and its expiry.
   * @throws {AuthError} if the key is unknown or revoked.
   */
  async issueToken(apiKey: string): Promise<IssuedToken> {
    const info = await this.keys.lookup(apiKey);
    if (!info) throw new AuthError("API key is not valid");
    if (info.revoked) throw new AuthError(`API key "${info.id}" was revoked`);
    checkOrg(info.org);
    const now = Math.floor(Date.now() / 1000);
    const exp = now + this.tokenLifetimeSeconds;
    const token = await new SignJWT({ org: info.org })
      .setProtectedHeader({ alg: ALG, kid: this.#kid, typ: "JWT" })
      .setIssuer(ISSUER)
      .setSubject(info.id)
      .setIssuedAt(now)
      .setExpirationTime(exp)
      .setJti(randomHex(12))
      .sign(this.#priv);
    return { token, expiresAt: exp * 1000 };
  }

  /**
   * Checks a hello token: signature, issuer, expiry, and that its key is not
   * revoked.
   *
   * @param token The token from hello, if any.
   * @returns The session: the token's org and expiry.
   * @throws {AuthError} if the token is missing, invalid, expired or its key revoked.
   */
  async authenticate(token: string | undefined): Promise<RelaySession> {
    if (token === undefined || token === "") {
      throw new AuthError(`This relay requires a token: exchange an API key at POST ${TOKEN_PATH}`);
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.#pub, { issuer: ISSUER, algorithms: [ALG] }));
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) {
        throw new AuthError("Token expired: exchange the API key for a new one", { cause: e });
      }
      throw new AuthError("Token is not valid for this relay", { cause: e });
    }
    const org = payload.org;
    if (typeof org !== "string" || typeof payload.sub !== "string" || !payload.exp) {
      throw new AuthError("Token is not valid for this relay: missing claims");
    }
    const key = await this.keys.get(payload.sub);
    if (!key) throw new AuthError(`Token's API key "${payload.sub}" does not exist`);
    if (key.revoked) throw new AuthError(`API key "${key.id}" was revoked`);
    if (key.org !== org) {
      throw new AuthError(
        `Token is not valid for this relay: its org "${org}" is not the org of its API key "${key.id}"`,
      );
    }
    return { org, expiresAt: payload.exp * 1000 };
  }

  /**
   * Answers the token API (`POST /v1/tokens`); other paths are not its business.
   *
   * @param req The request.
   * @param remote The peer address (throttling is per address and per key).
   * @returns The response, or `undefined` for other paths.
   */
  async handleRequest(req: Request, remote = ""): Promise<Response | undefined> {
    if (new URL(req.url).pathname !== TOKEN_PATH) return undefined;
    if (req.method !== "POST") {
      return _json(405, {
        error: { code: "invalid_argument", message: `Use POST ${TOKEN_PATH}` },
      });
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
    const buckets = [`ip:${remote}`];
    if (m) buckets.push(`key:${(await hashApiKey(m[1]!)).slice(0, 32)}`);
    const wait = this.#throttledFor(buckets);
    if (wait > 0) {
      this.#throttled++;
      return _json(429, {
        error: {
          code: "limit",
          reason: "too_many_failures",
          message: `Too many refused token requests: try again in ${wait} s`,
        },
      }, { "retry-after": String(wait) });
    }
    // Charged before the key is looked up, refunded if it is right: concurrent guesses
    // cannot slip past the limit while earlier ones are still being checked.
    const charged = this.#charge(buckets);
    if (!m) {
      this.#refused(buckets, remote, "missing_key");
      return _json(401, {
        error: {
          code: "auth",
          reason: "missing_key",
          message: "Send the API key as 'Authorization: Bearer sk_live_…'",
        },
      });
    }
    try {
      const t = await this.issueToken(m[1]!);
      for (const f of charged) f.count--;
      return _json(200, {
        token: t.token,
        expires_at: new Date(t.expiresAt).toISOString(),
        expires_in: this.tokenLifetimeSeconds,
      });
    } catch (e) {
      if (!(e instanceof AuthError)) {
        for (const f of charged) f.count--;
        throw e;
      }
      const reason = /revoked/.test(e.message) ? "revoked_key" : "invalid_key";
      this.#refused(buckets, remote, reason);
      return _json(401, { error: { code: "auth", reason, message: e.message } });
    }
  }

  /** Seconds until every bucket at its limit has reset (0 when none is). */
  #throttledFor(buckets: string[]): number {
    const now = this.#now();
    let wait = 0;
    for (const b of buckets) {
      const f = this.#failures.get(b);
      if (f && f.resetAt > now && f.count >= this.#maxFailures) {
        wait = Math.max(wait, Math.ceil((f.resetAt - now) / 1000));
      }
    }
    return wait;
  }

  /** Counts one attempt against each bucket (a window starts at its first). */
  #charge(buckets: string[]): { count: number; resetAt: number }[] {
    const now = this.#now();
    const out = [];
    for (const b of buckets) {
      let f = this.#failures.get(b);
      if (!f || f.resetAt <= now) {
        this.#failures.delete(b); // re-inserted last: the map stays oldest first
        f = { count: 0, resetAt: now + this.#windowMs };
        this.#failures.set(b, f);
      }
      f.count++;
      out.push(f);
    }
    if (this.#failures.size > MAX_THROTTLE_ENTRIES) {
      for (const [k, f] of this.#failures) if (f.resetAt <= now) this.#failures.delete(k);
      for (const k of this.#failures.keys()) {
        if (this.#failures.size <= MAX_THROTTLE_ENTRIES) break;
        this.#failures.delete(k);
      }
    }
    return out;
  }

  /** Logs and counts a refusal; the attempt was charged already. */
  #refused(buckets: string[], remote: string, reason: string): void {
    this.#failed++;
    const wait = this.#throttledFor(buckets);
    this.#logger("warn", "token request refused", {
      remote,
      reason,
      ...(wait > 0 ? { throttled_for_seconds: wait } : {}),
    });
  }

  /**
   * The token API's counters in Prometheus text format.
   *
   * @returns The exposition text.
   */
  metricsText(): string {
    return [
      [
        "skytale_token_failures_total",
        "Token requests refused (missing, unknown or revoked key)",
        this.#failed,
      ],
      [
        "skytale_token_throttled_total",
        "Token requests answered 429 (too many failures)",
        this.#throttled,
      ],
    ].map(([n, h, v]) => `# HELP ${n} ${h}\n# TYPE ${n} counter\n${n} ${v}\n`).join("");
  }

  /** Closes the key store. */
  close(): Promise<void> {
    return this.keys.close();
  }
}
