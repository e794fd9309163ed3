/**
 * Relay authentication material on NATS JetStream, so every relay of a
 * cluster sees the same API keys and signs with the same key
 * (`skytale relay --auth --store nats://…`, `skytale keys … --store nats://…`).
 *
 * One stream, `SKYTALE_AUTH` on `skytale.auth.>`, keeping the newest message
 * of each subject:
 *
 * - `skytale.auth.key.<id>`: the key's record as JSON (`id`, `org`, `hash`,
 *   `created`, `revoked`), rewritten on revocation with a compare-and-set on
 *   its subject sequence;
 * - `skytale.auth.hash.<sha256>`: the key id, to find a presented key;
 * - `skytale.auth.signing`: the private JWK that signs tokens, written once
 *   by the first relay (expected last subject sequence 0) and read by all.
 *
 * Whoever can read this stream can mint tokens: give NATS credentials and TLS
 * the care the signing key file would get (docs/DEPLOY.md).
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  type StoredMsg,
} from "@nats-io/jetstream";
import { InterruptedError, RelayError, StateError } from "../errors.ts";
import { directGet, directScan, ensureStream, isWrongLast, openJetStream } from "./_nats.ts";
import {
  apiKeyHash,
  type ApiKeyInfo,
  type ApiKeyStore,
  newApiKey,
  type SigningKeyStore,
} from "./auth.ts";

interface _Record extends ApiKeyInfo {
  hash: string;
}

/** An API key record as stored in the auth stream (anyone with NATS access could write one). */
const _RecordSchema = z.object({
  id: z.string(),
  org: z.string(),
  created: z.string(),
  revoked: z.string().optional(),
  hash: z.string(),
});

function _info(r: _Record): ApiKeyInfo {
  const info: ApiKeyInfo = { id: r.id, org: r.org, created: r.created };
  if (r.revoked) info.revoked = r.revoked;
  return info;
}

/** Options of {@linkcode NatsAuthStore.open}. */
export interface NatsAuthOptions {
  /** Subject and stream name prefix (default `skytale`, as the relay log's). */
  prefix?: string;
  /** Stream replicas in a NATS cluster (default 1). */
  replicas?: number;
}

/** API keys and the signing key on NATS: {@linkcode ApiKeyStore} and {@linkcode SigningKeyStore}. */
export class NatsAuthStore implements ApiKeyStore, SigningKeyStore {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #p: string;
  readonly #stream: string;
  /** Where the signing key is. */
  readonly where: string;
  #closed = false;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, prefix: string) {
    this.#nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc);
    this.#p = prefix;
    this.#stream = `${prefix.toUpperCase()}_AUTH`;
    this.where = `nats subject ${prefix}.auth.signing`;
  }

  /**
   * Connects to NATS and makes sure the auth stream exists.
   *
   * @param servers NATS URL(s), comma-separated.
   * @param opts Prefix and replicas.
   * @returns The store.
   * @throws {RelayError} `relay_unavailable` if NATS cannot be reached or has no JetStream.
   */
  static async open(servers: string, opts: NatsAuthOptions = {}): Promise<NatsAuthStore> {
    const prefix = opts.prefix ?? "skytale";
    return await openJetStream(servers, "skytale-auth", async (nc, jsm) => {
      await ensureStream(jsm, {
        name: `${prefix.toUpperCase()}_AUTH`,
        subjects: [`${prefix}.auth.>`],
        storage: "file",
        num_replicas: opts.replicas ?? 1,
        allow_direct: true,
        max_msgs_per_subject: 1,
      });
      return new NatsAuthStore(nc, jsm, prefix);
    });
  }

  #check(): void {
    if (this.#closed) throw new InterruptedError("closed", "The auth store is closed");
  }

  #last(subject: string): Promise<StoredMsg | null> {
    return directGet(this.#jsm, this.#stream, { last_by_subj: subject });
  }

  #record(m: StoredMsg): _Record {
    let parsed;
    try {
      parsed = _RecordSchema.safeParse(m.json());
    } catch (e) {
      parsed = { success: false as const, error: e };
    }
    if (!parsed.success) {
      const why = parsed.error instanceof z.ZodError
        ? z.prettifyError(parsed.error).replaceAll("\n", " ")
        : "not JSON";
      throw new StateError("state_corrupt", `API key record "${m.subject}" is not valid: ${why}`, {
        cause: parsed.error,
      });
    }
    const r = parsed.data;
    const record: _Record = { id: r.id, org: r.org, created: r.created, hash: r.hash };
    if (r.revoked !== undefined) record.revoked = r.revoked;
    return record;
  }

  /**
   * Creates an API key: its record, then its hash index.
   *
   * @param org The organisation.
   * @returns The key (shown once) and its record.
   */
  async create(org: string): Promise<{ key: string; info: ApiKeyInfo }> {
    this.#check();
    const { key, info, hash } = await newApiKey(org);
    const record: _Record = { ...info, hash };
    await this.#js.publish(`${this.#p}.auth.key.${info.id}`, JSON.stringify(record), {
      expect: { lastSubjectSequence: 0 },
    });
    await this.#js.publish(`${this.#p}.auth.hash.${hash}`, info.id, {
      expect: { lastSubjectSequence: 0 },
    });
    return { key, info };
  }

  /**
   * Lists every key, oldest first.
   *
   * @returns The records.
   */
  async list(): Promise<ApiKeyInfo[]> {
    this.#check();
    const out: ApiKeyInfo[] = [];
    for await (const m of directScan(this.#jsm, this.#stream, `${this.#p}.auth.key.*`)) {
      out.push(_info(this.#record(m)));
    }
    return out.sort((a, b) =>
      a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : 1
    );
  }

  /**
   * Revokes a key (a compare-and-set on its record, so a concurrent revocation keeps the first time).
   *
   * @param id The key id.
   * @returns `false` if no such key exists.
   */
  async revoke(id: string): Promise<boolean> {
    this.#check();
    if (!/^key_[0-9a-f]{16}$/.test(id)) return false;
    for (let attempt = 0; attempt < 10; attempt++) {
      const m = await this.#last(`${this.#p}.auth.key.${id}`);
      if (!m) return false;
      const r = this.#record(m);
      if (r.revoked) return true;
      try {
        await this.#js.publish(
          m.subject,
          JSON.stringify({ ...r, revoked: new Date().toISOString() }),
          { expect: { lastSubjectSequence: m.seq } },
        );
        return true;
      } catch (e) {
        if (!isWrongLast(e)) throw e;
      }
    }
    throw new RelayError("relay_error", `Too much contention revoking "${id}"`);
  }

  /**
   * Reads a key's record by id.
   *
   * @param id The key id.
   * @returns The record, or `undefined`.
   */
  async get(id: string): Promise<ApiKeyInfo | undefined> {
    this.#check();
    if (!/^key_[0-9a-f]{16}$/.test(id)) return undefined;
    const m = await this.#last(`${this.#p}.auth.key.${id}`);
    return m ? _info(this.#record(m)) : undefined;
  }

  /**
   * Finds the record of a presented key.
   *
   * @param key The API key.
   * @returns The record, or `undefined` if the key is unknown.
   */
  async lookup(key: string): Promise<ApiKeyInfo | undefined> {
    this.#check();
    const hash = await apiKeyHash(key);
    if (hash === undefined) return undefined;
    const m = await this.#last(`${this.#p}.auth.hash.${hash}`);
    return m ? await this.get(m.string()) : undefined;
  }

  /**
   * Reads the signing key, storing `make()`'s first if there is none; the
   * first relay to store one wins and every relay uses it.
   *
   * @param make Makes a new private JWK.
   * @returns The stored JWK.
   */
  async loadOrCreate(make: () => Promise<string>): Promise<string> {
    this.#check();
    const subject = `${this.#p}.auth.signing`;
    const found = await this.#last(subject);
    if (found) return found.string();
    try {
      await this.#js.publish(subject, await make(), { expect: { lastSubjectSequence: 0 } });
    } catch (e) {
      if (!isWrongLast(e)) throw e;
    }
    const m = await this.#last(subject);
    if (!m) throw new StateError("state_corrupt", `The signing key vanished from ${this.where}`);
    return m.string();
  }

  /** Closes the NATS connection (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#nc.drain().catch(() => this.#nc.close());
  }
}
