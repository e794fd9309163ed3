/**
 * Relay authentication: API keys, short-lived JWTs and the token API.
 *
 * - **API keys** `sk_live_…` (32 random bytes, base64url) belong to one
 *   organisation. The relay keeps only their SHA-256 hashes, with the org,
 *   the creation time and the revocation time, in an {@linkcode ApiKeyStore}:
 *   `auth.db` under the relay's data dir ({@linkcode KeyStore}), or NATS for
 *   a cluster (`src/relay/auth_nats.ts`); `skytale keys` edits the same store.
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
 * {@linkcode ApiKeyTokens} is the client side: it exchanges an API key for
 * tokens and renews them before they expire.
 *
 * @module
 */
import {
  decodeJwt,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
} from "jose";
import { AuthError, RelayError, StateError, ValidationError } from "../errors.ts";
import { ensureDir, joinPath, readFileIfExists, writeFileAtomic } from "../runtime/fs.ts";
import { openSqlite, type SqlDatabase, type SqlValue } from "../runtime/sqlite.ts";
import { jsonLog, type RelayLogger, type RelaySession } from "./server.ts";

/** The prefix of every API key. */
export const API_KEY_PREFIX = "sk_live_";
/** The default token lifetime, in seconds. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3600;
/** The path of the token API. */
export const TOKEN_PATH = "/v1/tokens";
/** Refused token requests tolerated per address (and per presented key) in a window. */
export const DEFAULT_TOKEN_MAX_FAILURES = 10;
/** The token throttle's window, in seconds. */
export const DEFAULT_TOKEN_FAILURE_WINDOW_SECONDS = 60;
/** How many addresses and keys the throttle remembers at most (oldest forgotten first). */
const MAX_THROTTLE_ENTRIES = 100_000;

type _Key = Awaited<ReturnType<typeof importJWK>>;

const ISSUER = "skytale-relay";
const ALG = "EdDSA";
const ORG = /^[A-Za-z0-9._-]{1,64}$/;
const KEY_SHAPE = /^sk_live_[A-Za-z0-9_-]{43}$/;

/** What is stored about an API key (never the key itself). */
export interface ApiKeyInfo {
  /** The key id, `key_` + 16 hex digits; shown by `skytale keys list`, used to revoke. */
  id: string;
  /** The organisation whose channels the key's tokens may use. */
  org: string;
  /** When the key was created, ISO-8601. */
  created: string;
  /** When the key was revoked, ISO-8601; absent while it is valid. */
  revoked?: string;
}

function _b64url(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function _hash(key: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  return new Uint8Array(d).toHex();
}

function _info(r: Record<string, SqlValue>): ApiKeyInfo {
  const info: ApiKeyInfo = { id: String(r.id), org: String(r.org), created: String(r.created) };
  if (typeof r.revoked === "string") info.revoked = r.revoked;
  return info;
}

/**
 * Validates an organisation name (one channel-name component).
 *
 * @param org The name.
 * @returns The name.
 * @throws {ValidationError} `invalid_argument` if it is not 1-64 of `[A-Za-z0-9._-]`.
 */
export function checkOrg(org: string): string {
  if (!ORG.test(org)) {
    throw new ValidationError(
      "invalid_argument",
      `Organisation "${org}" must be 1-64 letters, digits or . _ -`,
    );
  }
  return org;
}

/** Where API key records live (hashes only), shared by the relays and `skytale keys`. */
export interface ApiKeyStore {
  /**
   * Creates an API key for an organisation.
   *
   * @param org The organisation.
   * @returns The key (shown once, never stored) and its record.
   * @throws {ValidationError} `invalid_argument` for a bad org name.
   */
  create(org: string): Promise<{ key: string; info: ApiKeyInfo }>;
  /**
   * Lists every key, oldest first.
   *
   * @returns The records.
   */
  list(): Promise<ApiKeyInfo[]>;
  /**
   * Revokes a key: new tokens are refused, and so are its existing tokens at
   * their next hello.
   *
   * @param id The key id.
   * @returns `false` if no such key exists (revoking twice is fine).
   */
  revoke(id: string): Promise<boolean>;
  /**
   * Reads a key's record by id.
   *
   * @param id The key id.
   * @returns The record, or `undefined`.
   */
  get(id: string): Promise<ApiKeyInfo | undefined>;
  /**
   * Finds the record of a presented key.
   *
   * @param key The API key.
   * @returns The record, or `undefined` if the key is unknown.
   */
  lookup(key: string): Promise<ApiKeyInfo | undefined>;
  /** Releases the store. */
  close(): Promise<void>;
}

/** Where the relays' token signing key lives. */
export interface SigningKeyStore {
  /** Where the key is, for messages (a file path, a NATS subject). */
  readonly where: string;
  /**
   * Reads the stored private JWK, storing `make()`'s first if there is none.
   * When several relays start at once, every one gets the same survivor.
   *
   * @param make Makes a new private JWK (JSON text).
   * @returns The stored JWK (JSON text).
   */
  loadOrCreate(make: () => Promise<string>): Promise<string>;
}

/**
 * Makes a new API key for an organisation.
 *
 * @param org The organisation.
 * @returns The key, its record, and the hash to store.
 * @throws {ValidationError} `invalid_argument` for a bad org name.
 */
export async function newApiKey(
  org: string,
): Promise<{ key: string; info: ApiKeyInfo; hash: string }> {
  checkOrg(org);
  const key = API_KEY_PREFIX + _b64url(crypto.getRandomValues(new Uint8Array(32)));
  const info: ApiKeyInfo = {
    id: "key_" + crypto.getRandomValues(new Uint8Array(8)).toHex(),
    org,
    created: new Date().toISOString(),
  };
  return { key, info, hash: await _hash(key) };
}

/**
 * The stored hash of a presented API key.
 *
 * @param key The key.
 * @returns The hex SHA-256 of the key, or `undefined` if it is not shaped like one.
 */
export async function apiKeyHash(key: string): Promise<string | undefined> {
  return KEY_SHAPE.test(key) ? await _hash(key) : undefined;
}

/** API key records (hashes only) in `auth.db`, shared by the relay and `skytale keys`. */
export class KeyStore implements ApiKeyStore {
  #db: SqlDatabase;

  private constructor(db: SqlDatabase) {
    this.#db = db;
  }

  /**
   * Opens (creating if needed) the key store of a relay data dir.
   *
   * @param dataDir The relay's data dir.
   * @returns The store.
   */
  static async open(dataDir: string): Promise<KeyStore> {
    await ensureDir(dataDir);
    const db = openSqlite(joinPath(dataDir, "auth.db"));
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec(`CREATE TABLE IF NOT EXISTS api_keys (
      id TEXT PRIMARY KEY,
      org TEXT NOT NULL,
      hash TEXT NOT NULL UNIQUE,
      created TEXT NOT NULL,
      revoked TEXT
    )`);
    return new KeyStore(db);
  }

  /**
   * Creates an API key for an organisation.
   *
   * @param org The organisation.
   * @returns The key (shown once, never stored) and its record.
   * @throws {ValidationError} `invalid_argument` for a bad org name.
   */
  async create(org: string): Promise<{ key: string; info: ApiKeyInfo }> {
    const { key, info, hash } = await newApiKey(org);
    this.#db.prepare("INSERT INTO api_keys (id, org, hash, created) VALUES (?, ?, ?, ?)")
      .run(info.id, org, hash, info.created);
    return { key, info };
  }

  /**
   * Lists every key, oldest first.
   *
   * @returns The records.
   */
  list(): Promise<ApiKeyInfo[]> {
    return Promise.resolve(
      this.#db.prepare("SELECT id, org, created, revoked FROM api_keys ORDER BY created, id")
        .all().map(_info),
    );
  }

  /**
   * Revokes a key: new tokens are refused, and so are its existing tokens at
   * their next hello.
   *
   * @param id The key id.
   * @returns `false` if no such key exists (revoking twice is fine).
   */
  revoke(id: string): Promise<boolean> {
    const r = this.#db.prepare(
      "UPDATE api_keys SET revoked = COALESCE(revoked, ?) WHERE id = ?",
    ).run(new Date().toISOString(), id);
    return Promise.resolve(r.changes === 1);
  }

  /**
   * Reads a key's record by id.
   *
   * @param id The key id.
   * @returns The record, or `undefined`.
   */
  get(id: string): Promise<ApiKeyInfo | undefined> {
    const r = this.#db.prepare("SELECT id, org, created, revoked FROM api_keys WHERE id = ?")
      .get(id);
    return Promise.resolve(r && _info(r));
  }

  /**
   * Finds the record of a presented key.
   *
   * @param key The API key.
   * @returns The record, or `undefined` if the key is unknown.
   */
  async lookup(key: string): Promise<ApiKeyInfo | undefined> {
    const hash = await apiKeyHash(key);
    if (hash === undefined) return undefined;
    const r = this.#db.prepare("SELECT id, org, created, revoked FROM api_keys WHERE hash = ?")
      .get(hash);
    return r && _info(r);
  }

  /** Closes the database. */
  close(): Promise<void> {
    this.#db.close();
    return Promise.resolve();
  }
}

/** The signing key in `signing-key.jwk` (mode 0600) in a relay data dir. */
export class FileSigningKey implements SigningKeyStore {
  /** The file's path. */
  readonly where: string;

  /**
   * Names the file; nothing is read until {@linkcode FileSigningKey.loadOrCreate}.
   *
   * @param dataDir The relay's data dir.
   */
  constructor(dataDir: string) {
    this.where = joinPath(dataDir, "signing-key.jwk");
  }

  /**
   * Reads the key, writing `make()`'s first if the file does not exist.
   *
   * @param make Makes a new private JWK.
   * @returns The stored JWK.
   */
  async loadOrCreate(make: () => Promise<string>): Promise<string> {
    let raw = await readFileIfExists(this.where);
    if (!raw) {
      await writeFileAtomic(this.where, new TextEncoder().encode(await make() + "\n"));
      // Read back: if another process wrote one at the same moment, both use the survivor.
      raw = await readFileIfExists(this.where);
    }
    return new TextDecoder().decode(raw);
  }
}

async function _signingKey(
  store: SigningKeyStore,
): Promise<{ priv: _Key; pub: _Key; kid: string }> {
  const text = await store.loadOrCreate(async () => {
    const { privateKey } = await generateKeyPair(ALG, { crv: "Ed25519", extractable: true });
    return JSON.stringify({
      ...await exportJWK(privateKey),
      alg: ALG,
      kid: crypto.getRandomValues(new Uint8Array(8)).toHex(),
    });
  });
  let jwk: { kty?: string; crv?: string; x?: string; d?: string; kid?: string };
  try {
    jwk = JSON.parse(text);
  } catch (e) {
    throw new StateError("state_corrupt", `Signing key "${store.where}" is not JSON`, {
      cause: e,
    });
  }
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.d || !jwk.x) {
    throw new StateError(
      "state_corrupt",
      `Signing key "${store.where}" is not an Ed25519 private JWK`,
    );
  }
  const priv = await importJWK(jwk, ALG);
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
   * @throws {RelayError} `state_corrupt` if the signing key is unreadable.
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
      .setJti(crypto.getRandomValues(new Uint8Array(12)).toHex())
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
    if (m) buckets.push(`key:${(await _hash(m[1]!)).slice(0, 32)}`);
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
      const body = await res.json().catch(() => undefined) as
        | { token?: string; expires_in?: number; error?: { message?: string } }
        | undefined;
      if (res.status === 401 || res.status === 403) {
        this.#cached = undefined;
        throw new AuthError(
          `The relay refused the API key: ${body?.error?.message ?? `HTTP ${res.status}`}`,
        );
      }
      if (!res.ok || typeof body?.token !== "string") {
        lastError = new Error(`HTTP ${res.status} from "${base}${TOKEN_PATH}"`);
        continue;
      }
      let lifetimeMs = (body.expires_in ?? 0) * 1000;
      if (!(lifetimeMs > 0)) {
        const c = decodeJwt(body.token);
        lifetimeMs = ((c.exp ?? 0) - (c.iat ?? 0)) * 1000;
      }
      // Measured on the local clock from when the request was sent: immune to clock skew.
      this.#cached = {
        token: body.token,
        renewAt: started + lifetimeMs / 2,
        expiresAt: started + lifetimeMs,
      };
      return body.token;
    }
    if (this.#cached && Date.now() < this.#cached.expiresAt - 1000) return this.#cached.token;
    throw new RelayError(
      "relay_unavailable",
      `Cannot reach the token API at "${this.#urls.join(", ")}": ${
        lastError instanceof Error ? lastError.message : String(lastError)
      }`,
      { cause: lastError },
    );
  }
}
