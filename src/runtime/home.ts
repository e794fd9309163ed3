/**
 * Where the user's Skytale state lives on disk. Apart from `./env.ts` because
 * it needs `node:os`: the CLI imports it, the channel manager only when it
 * keeps its state in files (no `store` given), so the SDK loads in a browser.
 *
 * @module
 */
import os from "node:os";
import path from "node:path";
import { env } from "./env.ts";

/**
 * The user's home directory.
 *
 * @returns An absolute path.
 */
export function homeDir(): string {
  return os.homedir();
}

/**
 * The user's one Skytale place (`SKYTALE_HOME`, default `~/.skytale`): the
 * embedded local relay's log (`relay/`) and secret (`local.key`), and the
 * default data dir.
 *
 * @returns An absolute path (unless `SKYTALE_HOME` is relative).
 */
export function skytaleHome(): string {
  return env("SKYTALE_HOME") ?? path.join(os.homedir(), ".skytale");
}
