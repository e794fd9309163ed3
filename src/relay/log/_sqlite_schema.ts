/**
 * The SQLite relay log's file format: its schema (version 1, with the columns
 * added since), how a file is brought up to it, and the statements the log
 * runs. Row values are read with {@linkcode rowNumber} and {@linkcode rowBytes},
 * which refuse a row that does not hold what the schema says.
 *
 * @module
 */
import { StateError } from "../../errors.ts";
import type { SqlDatabase, SqlStatement, SqlValue } from "../../runtime/sqlite.ts";

const SCHEMA_VERSION = "1";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
  cid INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  epoch INTEGER NOT NULL,
  head INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
  cid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  id BLOB NOT NULL,
  time INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_seq ON entries (cid, seq);
CREATE UNIQUE INDEX IF NOT EXISTS entries_id ON entries (cid, id);
CREATE INDEX IF NOT EXISTS entries_time ON entries (time);
CREATE TABLE IF NOT EXISTS epochs (
  cid INTEGER NOT NULL,
  epoch INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  PRIMARY KEY (cid, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  address TEXT NOT NULL,
  id BLOB NOT NULL,
  payload BLOB NOT NULL,
  expires_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0,
  lease_id INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS mailbox_id ON mailbox (address, id);
CREATE INDEX IF NOT EXISTS mailbox_expiry ON mailbox (expires_at);
`;

/**
 * Columns added to tables of schema 1 after files of it were written. Adding
 * them keeps every row (each gets the default) and old readers keep working,
 * so the schema version stays 1.
 */
const ADDED_COLUMNS: readonly [table: string, column: string, decl: string][] = [
  // Mailbox leases: 0 = not leased.
  ["mailbox", "lease_until", "INTEGER NOT NULL DEFAULT 0"],
  ["mailbox", "lease_id", "INTEGER NOT NULL DEFAULT 0"],
];

/** Adds the columns in {@linkcode ADDED_COLUMNS} that a file lacks (inside the open transaction). */
function _addColumns(db: SqlDatabase): void {
  for (const [table, column, decl] of ADDED_COLUMNS) {
    const have = db.prepare(`PRAGMA table_info(${table})`).all().some((r) => r.name === column);
    if (!have) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`);
  }
}

/** The statements {@linkcode SqliteLog} runs. */
export type Statements = Record<
  | "channel"
  | "createChannel"
  | "entryById"
  | "insertEntry"
  | "updateChannel"
  | "insertEpoch"
  | "read"
  | "epochStart"
  | "mailboxPut"
  | "mailboxSelect"
  | "mailboxPayload"
  | "mailboxLease"
  | "mailboxDeleteExpired"
  | "mailboxAck"
  | "mailboxRelease"
  | "mailboxPurge"
  | "trimCount"
  | "trimAge"
  | "begin"
  | "commit"
  | "rollback",
  SqlStatement
>;

/**
 * Prepares the log's statements.
 *
 * @param db The open database.
 * @returns The statements.
 */
export function prepareStatements(db: SqlDatabase): Statements {
  const p = (sql: string) => db.prepare(sql);
  return {
    channel: p("SELECT cid, epoch, head FROM channels WHERE name = ?"),
    createChannel: p("INSERT OR IGNORE INTO channels (name, epoch, head) VALUES (?, 0, 0)"),
    entryById: p("SELECT seq, epoch, kind FROM entries WHERE cid = ? AND id = ?"),
    insertEntry: p(
      "INSERT INTO entries (cid, seq, epoch, kind, id, time, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
    ),
    updateChannel: p("UPDATE channels SET head = ?, epoch = ? WHERE cid = ?"),
    insertEpoch: p("INSERT OR REPLACE INTO epochs (cid, epoch, first_seq) VALUES (?, ?, ?)"),
    read: p(
      "SELECT seq, epoch, kind, id, time, payload FROM entries WHERE cid = ? AND seq >= ? ORDER BY seq LIMIT ?",
    ),
    epochStart: p("SELECT first_seq FROM epochs WHERE cid = ? AND epoch = ?"),
    mailboxPut: p(
      "INSERT OR IGNORE INTO mailbox (address, id, payload, expires_at) VALUES (?, ?, ?, ?)",
    ),
    mailboxSelect: p(
      "SELECT n, id, length(payload) AS size, expires_at, lease_until FROM mailbox WHERE address = ? ORDER BY n",
    ),
    // Payloads are read one by one, only for the items a take returns.
    mailboxPayload: p("SELECT payload FROM mailbox WHERE n = ?"),
    mailboxLease: p("UPDATE mailbox SET lease_until = ?, lease_id = ? WHERE n = ?"),
    mailboxDeleteExpired: p("DELETE FROM mailbox WHERE address = ? AND expires_at <= ?"),
    mailboxAck: p("DELETE FROM mailbox WHERE address = ? AND id = ?"),
    mailboxRelease: p(
      "UPDATE mailbox SET lease_until = 0 WHERE address = ? AND id = ? AND lease_id = ?",
    ),
    mailboxPurge: p("DELETE FROM mailbox WHERE expires_at <= ?"),
    trimCount: p(
      "DELETE FROM entries WHERE cid = ? AND seq > ? AND seq <= ? AND kind NOT IN (1, 3)",
    ),
    trimAge: p("DELETE FROM entries WHERE time < ? AND kind NOT IN (1, 3)"),
    begin: p("BEGIN IMMEDIATE"),
    commit: p("COMMIT"),
    rollback: p("ROLLBACK"),
  };
}

/**
 * Creates the schema in a new file, checks the version of an existing one and
 * adds the columns it lacks, in one transaction.
 *
 * @param db The open database.
 * @param path The file (for the error).
 * @throws {StateError} `state_corrupt` if the file has another schema version.
 */
export function migrate(db: SqlDatabase, path: string): void {
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(SCHEMA);
    const v = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get();
    if (v === undefined) {
      db.prepare("INSERT INTO meta (key, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
    } else if (v.value !== SCHEMA_VERSION) {
      throw new StateError(
        "state_corrupt",
        `Relay log "${path}" has schema version "${String(v.value)}", expected "${SCHEMA_VERSION}"`,
      );
    }
    _addColumns(db);
    db.exec("COMMIT");
  } catch (e) {
    try {
      db.exec("ROLLBACK");
    } catch { /* SQLite already rolled it back */ }
    throw e;
  }
}

/**
 * A blob column's value.
 *
 * @param v The value.
 * @returns The bytes.
 * @throws {StateError} `state_corrupt` if it is no blob.
 */
export function rowBytes(v: SqlValue | undefined): Uint8Array {
  if (!(v instanceof Uint8Array)) {
    throw new StateError("state_corrupt", "Relay log row has no blob");
  }
  return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * An integer column's value.
 *
 * @param v The value.
 * @returns The number.
 * @throws {StateError} `state_corrupt` if it is no number.
 */
export function rowNumber(v: SqlValue | undefined): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  throw new StateError("state_corrupt", `Relay log row has ${typeof v} where a number belongs`);
}
