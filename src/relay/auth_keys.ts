/**
 * The relay's API key records and its token signing key, wherever they live.
 *
 * API keys `sk_live_…` (32 random bytes, base64url) belong to one
 * organisation. The relay keeps only their SHA-256 hashes, with the org, the
 * creation time and the revocation time, in an {@linkcode ApiKeyStore}:
 * `auth.db` under the relay's data dir ({@linkcode KeyStore}), or NATS for a
 * cluster (`auth_nats.ts`); `skytale keys` edits the same store. The token
 * signing key is a private JWK in a {@linkcode SigningKeyStore}:
 * `signing-key.jwk` (mode 0600) in the data dir ({@linkcode FileSigningKey}), or NATS.
 *
 * @module
 */
import { ValidationError } from "../errors.ts";
import { randomBytes, randomHex, sha256Hex } from "../_util.ts";
import { ensureDir, joinPath, readFileIfExists, writeFileAtomic } from "../runtime/fs.ts";
import { openSqlite, type SqlDatabase, type SqlValue } from "../runtime/sqlite.ts";
import { API_KEY_PREFIX } from "./auth_client.ts";

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

/** The hex SHA-256 of an API key: what the stores keep and look keys up by. */
export function hashApiKey(key: string): Promise<string> {
  return sha256Hex(new TextEncoder().encode(key));
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
  const key = API_KEY_PREFIX +
    randomBytes(32).toBase64({ alphabet: "base64url", omitPadding: true });
  const info: ApiKeyInfo = {
    id: "key_" + randomHex(8),
    org,
    created: new Date().toISOString(),
  };
  return { key, info, hash: await hashApiKey(key) };
}

/**
 * The stored hash of a presented API key.
 *
 * @param key The key.
 * @returns The hex SHA-256 of the key, or `undefined` if it is not shaped like one.
 */
export async function apiKeyHash(key: string): Promise<string | undefined> {
  return KEY_SHAPE.test(key) ? await hashApiKey(key) : undefined;
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
