/**
 * What the NATS relay log and the NATS auth store share: connecting, telling
 * JetStream's refusals apart, and adding a stream that several relays may add
 * at once.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type JetStreamManager, jetstreamManager, type StoredMsg } from "@nats-io/jetstream";
import { RelayError } from "../errors.ts";
import { backoff, sleep } from "../_util.ts";

/** JetStream's error code for a failed expected-last-sequence check. */
const WRONG_LAST_SEQUENCE = 10071;

/**
 * Whether a publish was refused by an expected-last-(subject-)sequence check.
 *
 * @param e The error.
 * @returns True for that refusal.
 */
export function isWrongLast(e: unknown): boolean {
  const err = e as { code?: number; api_error?: { err_code?: number }; message?: string };
  return err?.code === WRONG_LAST_SEQUENCE || err?.api_error?.err_code === WRONG_LAST_SEQUENCE ||
    /wrong last sequence/i.test(err?.message ?? "");
}

/**
 * Whether a request failed because the stream or message does not exist.
 *
 * @param e The error.
 * @returns True for "not found".
 */
export function isNotFound(e: unknown): boolean {
  return /not found|no message found/i.test((e as Error)?.message ?? "");
}

/**
 * A direct get that answers `null` for a message (or stream) that is not there.
 *
 * @param jsm The JetStream manager.
 * @param stream The stream (with `allow_direct`).
 * @param query Which message: `{ seq }`, `{ last_by_subj }` or `{ next_by_subj, seq }`.
 * @returns The message, or `null`.
 */
export async function directGet(
  jsm: JetStreamManager,
  stream: string,
  query: Parameters<JetStreamManager["direct"]["getMessage"]>[1],
): Promise<StoredMsg | null> {
  try {
    return await jsm.direct.getMessage(stream, query);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

/**
 * Every stored message of a stream on `subject` (wildcards allowed), oldest first.
 *
 * @param jsm The JetStream manager.
 * @param stream The stream (with `allow_direct`).
 * @param subject The subject filter.
 * @returns The messages, one direct get each.
 */
export async function* directScan(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
): AsyncGenerator<StoredMsg> {
  for (let seq = 1;;) {
    const m = await directGet(jsm, stream, { next_by_subj: subject, seq });
    if (!m) return;
    seq = m.seq + 1;
    yield m;
  }
}

/**
 * Whether a NATS request failed in a way that passes: a timeout, no responders
 * (a stream without a leader while JetStream elects one), a connection being
 * re-established.
 *
 * @param e The error.
 * @returns True when trying again shortly makes sense.
 */
export function isTransient(e: unknown): boolean {
  let x = e as { name?: string; message?: string; cause?: unknown } | undefined;
  for (let depth = 0; x && depth < 4; depth++) {
    if (
      ["TimeoutError", "NoResponders", "RequestError", "ConnectionError"].includes(x.name ?? "")
    ) {
      return true;
    }
    if (/timeout|no responders|temporarily unavailable|leadership/i.test(x.message ?? "")) {
      return true;
    }
    x = x.cause as typeof x;
  }
  return false;
}

/**
 * Connects to NATS (reconnecting forever after that) and opens JetStream management.
 *
 * @param servers NATS URL(s), comma-separated.
 * @param name The connection name NATS shows.
 * @returns The connection and its JetStream manager.
 * @throws {RelayError} `relay_unavailable` if NATS cannot be reached or has no JetStream.
 */
export async function connectNats(
  servers: string,
  name: string,
): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: servers.split(",").map((s) => s.trim().replace(/^nats:\/\//, "")),
      name,
      maxReconnectAttempts: -1,
    });
  } catch (e) {
    throw new RelayError("relay_unavailable", `Cannot connect to NATS at "${servers}"`, {
      cause: e,
    });
  }
  try {
    return { nc, jsm: await jetstreamManager(nc) };
  } catch (e) {
    await nc.close();
    throw noJetStream(servers, e);
  }
}

/**
 * Connects to NATS and sets up what a store needs (its streams); if the setup
 * fails, the connection is closed again.
 *
 * @param servers NATS URL(s), comma-separated.
 * @param name The connection name NATS shows.
 * @param setup Makes the streams and the store.
 * @returns What `setup` returns.
 * @throws {RelayError} `relay_unavailable` if NATS cannot be reached or has no JetStream.
 */
export async function openJetStream<T>(
  servers: string,
  name: string,
  setup: (nc: NatsConnection, jsm: JetStreamManager) => Promise<T>,
): Promise<T> {
  const { nc, jsm } = await connectNats(servers, name);
  try {
    return await setup(nc, jsm);
  } catch (e) {
    await nc.close();
    throw noJetStream(servers, e);
  }
}

/** How long {@linkcode retryTransient} tries again while NATS fails in a passing way. */
const TRANSIENT_RETRY_MS = 8000;

/**
 * Runs `fn` again while it fails in a passing way (see {@linkcode isTransient}), for up to
 * 8 s, backing off from 100 ms to 1 s.
 *
 * @param what What is tried, for the error (`append to "a/b/c"`).
 * @param fn The operation.
 * @param stopped Whether to stop trying (the store closed).
 * @returns What `fn` returns.
 * @throws {RelayError} `relay_unavailable` if NATS still fails after that.
 */
export async function retryTransient<T>(
  what: string,
  fn: () => Promise<T>,
  stopped: () => boolean,
): Promise<T> {
  const end = Date.now() + TRANSIENT_RETRY_MS;
  for (let attempt = 0;; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!isTransient(e) || stopped()) throw e;
      if (Date.now() >= end) {
        throw new RelayError("relay_unavailable", `NATS did not answer the ${what} in time`, {
          cause: e,
        });
      }
      await sleep(backoff(attempt, 100, 1000));
    }
  }
}

/**
 * The error for a NATS whose JetStream cannot be used.
 *
 * @param servers The NATS URL(s).
 * @param cause What failed.
 * @returns A `relay_unavailable` error.
 */
export function noJetStream(servers: string, cause: unknown): RelayError {
  return new RelayError("relay_unavailable", `NATS at "${servers}" has no usable JetStream`, {
    cause,
  });
}

/**
 * Makes sure a stream exists. Relays starting (or creating a channel) at once
 * race to add it: the loser's add fails ("subjects overlap", "name already in
 * use"), and then the stream is there.
 *
 * @param jsm The JetStream manager.
 * @param config The stream's configuration (`name` and `subjects` at least).
 */
export async function ensureStream(
  jsm: JetStreamManager,
  config: { name: string; subjects: string[] } & Record<string, unknown>,
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    return;
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  try {
    await jsm.streams.add(config as Parameters<JetStreamManager["streams"]["add"]>[0]);
  } catch (e) {
    await jsm.streams.info(config.name).catch(() => {
      throw e;
    });
  }
}
