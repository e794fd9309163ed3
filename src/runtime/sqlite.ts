/**
 * A thin wrapper over `node:sqlite` (`DatabaseSync`), which Deno, Node and Bun
 * all provide, so storage code never imports `node:*` itself.
 *
 * @module
 */
import fs from "node:fs";
import { DatabaseSync } from "node:sqlite";

/** A value SQLite binds or returns. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/** A prepared statement. */
export interface SqlStatement {
  /**
   * Runs the statement.
   *
   * @param params Positional parameters.
   * @returns How many rows changed.
   */
  run(...params: SqlValue[]): { changes: number };
  /**
   * Runs the statement and returns its first row.
   *
   * @param params Positional parameters.
   * @returns The first row, or `undefined`.
   */
  get(...params: SqlValue[]): Record<string, SqlValue> | undefined;
  /**
   * Runs the statement and returns every row.
   *
   * @param params Positional parameters.
   * @returns Every row.
   */
  all(...params: SqlValue[]): Record<string, SqlValue>[];
}

/** An open database. */
export interface SqlDatabase {
  /**
   * Runs one or more statements without parameters.
   *
   * @param sql The SQL.
   */
  exec(sql: string): void;
  /**
   * Prepares a statement.
   *
   * @param sql The SQL.
   * @returns The statement.
   */
  prepare(sql: string): SqlStatement;
  /** Closes the database. */
  close(): void;
}

/**
 * Opens (creating if needed) a SQLite database file. The file is owner-only
 * (0600), whatever its mode was, and so are its `-wal`, `-shm` and `-journal`
 * files: SQLite creates those with the database file's mode, and the ones
 * left from before are set here.
 *
 * @param path The file path, or `:memory:`.
 * @returns The database.
 */
export function openSqlite(path: string): SqlDatabase {
  if (path !== ":memory:" && !path.startsWith("file:")) _ownerOnly(path);
  const db = new DatabaseSync(path);
  return {
    exec: (sql) => db.exec(sql),
    prepare(sql) {
      const st = db.prepare(sql);
      return {
        run: (...p) => {
          const r = st.run(...p);
          return { changes: Number(r.changes) };
        },
        get: (...p) => st.get(...p) as Record<string, SqlValue> | undefined,
        all: (...p) => st.all(...p) as Record<string, SqlValue>[],
      };
    },
    close: () => db.close(),
  };
}

/** Creates the database file 0600 if missing and makes it and its side files 0600. */
function _ownerOnly(path: string): void {
  fs.closeSync(fs.openSync(path, "a", 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== "ENOENT" && code !== "EPERM") throw e;
    }
  }
}
