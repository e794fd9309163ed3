/**
 * A thin wrapper over `node:sqlite` (`DatabaseSync`), which Deno, Node and Bun
 * all provide, so storage code never imports `node:*` itself.
 *
 * @module
 */
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
 * Opens (creating if needed) a SQLite database file.
 *
 * @param path The file path, or `:memory:`.
 * @returns The database.
 */
export function openSqlite(path: string): SqlDatabase {
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
