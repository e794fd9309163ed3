/**
 * File access for stores and relays: atomic, owner-only writes.
 *
 * @module
 */
import { closeSync, fsync, openSync, writeSync } from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { randomHex } from "../_util.ts";

/**
 * Creates a directory (and its parents) readable by the owner only. A
 * directory that existed already is made owner-only too (0700), whatever
 * its mode was, unless `restrict` is false or it is a shared directory (sticky
 * bit, like `/tmp`).
 *
 * @param dir The directory.
 * @param options `restrict: false` leaves an existing directory's mode alone.
 */
export async function ensureDir(dir: string, options: { restrict?: boolean } = {}): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.restrict ?? true) await _chmodDir(dir);
}

/** Makes a directory 0700, but never a shared one (sticky bit, like `/tmp`). */
async function _chmodDir(dir: string): Promise<void> {
  try {
    if ((await fsp.stat(dir)).mode & 0o1000) return;
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return;
    throw e;
  }
  await _chmod(dir, 0o700);
}

/** Sets a mode where the file exists and is ours; a missing file is fine. */
async function _chmod(file: string, mode: number): Promise<void> {
  try {
    await fsp.chmod(file, mode);
  } catch (e) {
    const code = (e as { code?: string }).code;
    // Not ours (a shared directory someone else made): nothing we can do about it here.
    if (code !== "ENOENT" && code !== "EPERM") throw e;
  }
}

/**
 * Makes what already lies in a directory owner-only: the directory and the
 * directories under it 0700, the files 0600 (state written by an older
 * version, or copied in with a looser mode). Goes `depth` levels down.
 *
 * @param dir The directory.
 * @param depth How many levels of subdirectories to visit (default 2).
 */
export async function restrictTree(dir: string, depth = 2): Promise<void> {
  await _chmodDir(dir);
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return;
    throw e;
  }
  for (const ent of entries) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) {
      if (depth > 0) await restrictTree(p, depth - 1);
      else await _chmodDir(p);
    } else if (ent.isFile()) await _chmod(p, 0o600);
  }
}

/**
 * Reads a secret file, or creates it with `length` random bytes if it does
 * not exist: owner-only (0600), in an owner-only directory. Creation is
 * atomic: the bytes are written to a temp file that is then hard-linked to the
 * name, which fails if another process created it first (that one's secret
 * is then read). So two processes starting at once end up with one secret.
 *
 * @param file The secret's path.
 * @param length The length in bytes of a new secret.
 * @returns The file's bytes (an existing file's, whatever their length).
 */
export async function readOrCreateSecret(file: string, length: number): Promise<Uint8Array> {
  await ensureDir(path.dirname(file));
  let bytes = await readFileIfExists(file);
  if (bytes === undefined) {
    const tmp = `${file}.${randomHex(6)}.tmp`;
    const fh = await fsp.open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(crypto.getRandomValues(new Uint8Array(length)));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.link(tmp, file);
      await syncDir(path.dirname(file));
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
      // Another process made it first: use that one.
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    bytes = await readFileIfExists(file);
  }
  await _chmod(file, 0o600);
  return bytes ?? new Uint8Array(0);
}

/**
 * Writes a file atomically: a temp file in the same directory is written,
 * flushed to disk, made owner-only and renamed over the target, so a crash
 * leaves either the old or the new content, never a torn file. With
 * `backup`, the previous content is kept beside it as `<file>.bak`.
 *
 * @param file The target path.
 * @param data The bytes to write.
 * @param options `backup: true` keeps the previous version as `<file>.bak`;
 *   `sync: false` skips the fsyncs: still atomic against a process crash, but a
 *   power loss may keep the previous version (default `true`).
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array,
  options: { backup?: boolean; sync?: boolean } = {},
): Promise<void> {
  const sync = options.sync ?? true;
  const dir = path.dirname(file);
  const tmp = path.join(
    dir,
    `.${path.basename(file)}.${randomHex(6)}.tmp`,
  );
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    await fh.writeFile(data);
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    if (options.backup) {
      try {
        await fsp.rename(file, file + ".bak");
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOENT") throw e;
      }
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  if (sync) await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, "r");
    await fh.sync();
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/**
 * Reads a file.
 *
 * @param file The path.
 * @returns Its bytes, or `undefined` if it does not exist.
 */
export async function readFileIfExists(file: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await fsp.readFile(file));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Lists the names in a directory.
 *
 * @param dir The directory.
 * @returns Its entries' names, or `[]` if it does not exist.
 */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return [];
    throw e;
  }
}

/**
 * Removes a file if it exists.
 *
 * @param file The path.
 */
export async function removeFile(file: string): Promise<void> {
  await fsp.rm(file, { force: true });
}

/**
 * Joins path segments.
 *
 * @param parts The segments.
 * @returns The joined path.
 */
export function joinPath(...parts: string[]): string {
  return path.join(...parts);
}

/**
 * Takes an exclusive lock file holding this process's pid. A lock left by a
 * process that no longer runs is taken over.
 *
 * @param file The lock file.
 * @returns The pid of the live process holding it, or `undefined` once it is ours.
 */
export async function acquireLockFile(file: string): Promise<number | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await fsp.open(file, "wx", 0o600);
      try {
        await fh.writeFile(String(process.pid));
      } finally {
        await fh.close();
      }
      return undefined;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const holder = Number(
      (await readFileIfExists(file)
        ?.then((b) => new TextDecoder().decode(b)))?.trim(),
    );
    // Our own pid in the file is a previous incarnation whose pid came round again.
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      return holder;
    }
    await fsp.rm(file, { force: true }); // stale: its process is gone
  }
  return -1;
}

/**
 * Removes a lock file if this process holds it.
 *
 * @param file The lock file.
 */
export async function releaseLockFile(file: string): Promise<void> {
  const b = await readFileIfExists(file);
  if (b && Number(new TextDecoder().decode(b).trim()) === process.pid) {
    await fsp.rm(file, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/**
/**
 * A file kept open for appends, created owner-only if missing: what a journal
 * written once per burst needs, without an open and a close around every line.
 * Each append is written in one synchronous call (about 10 µs for a journal
 * line, where an asynchronous open, write and close are three round trips to
 * the I/O thread pool: 0.02-0.1 ms, far more under load), so appends land in
 * call order and, once `append` returns, survive the process (not a power
 * loss). With `sync` the promise resolves once an fsync begun after the write
 * has finished: the line is on disk, and a crash can tear only the last one.
 */
export class Appender {
  #file: string;
  #fd: number | undefined;
  /** The last fsync asked for: `close()` waits for it before closing the descriptor. */
  #flushed: Promise<void> = Promise.resolve();

  /**
   * Creates the appender; the file opens on the first append.
   *
   * @param file The path.
   */
  constructor(file: string) {
    this.#file = file;
  }

  /**
   * Appends bytes.
   *
   * @param data The bytes.
   * @param sync Whether to flush the file to disk before resolving.
   * @returns When written (and flushed, with `sync`).
   */
  append(data: Uint8Array, sync: boolean): Promise<void> {
    try {
      this.#fd ??= openSync(this.#file, "a", 0o600);
      let off = 0;
      while (off < data.length) off += writeSync(this.#fd, data, off, data.length - off);
    } catch (e) {
      // The caller's error; the next append reopens the file.
      this.#closeFd();
      return Promise.reject(e);
    }
    if (!sync) return Promise.resolve();
    const fd = this.#fd;
    const flushed = new Promise<void>((resolve, reject) =>
      fsync(fd, (e) => e ? reject(e) : resolve())
    );
    this.#flushed = flushed.catch(() => {});
    return flushed;
  }

  /**
   * Closes the file once the fsyncs asked for have finished.
   *
   * @returns When closed.
   */
  async close(): Promise<void> {
    await this.#flushed;
    this.#closeFd();
  }

  #closeFd(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }
}
