/**
 * `skytale keys`: manage the API keys of an authenticated relay. Works on the
 * relay's data dir (`auth.db`), the same `--data-dir` as `skytale relay`, or
 * with `--store nats://…` on the keys every relay of a NATS cluster shares;
 * running relays see changes at once.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { logLine } from "../runtime/env.ts";
import { skytaleHome } from "../runtime/home.ts";
import { joinPath } from "../runtime/fs.ts";
import { writeOut } from "./_out.ts";
import { parseCommandArgs } from "./_args.ts";
import { type ApiKeyStore, KeyStore } from "../relay/auth.ts";

const USAGE = `Usage: skytale keys <create|list|revoke> [options]

  keys create --org ORG      create an API key; prints it once (only its hash is stored)
  keys list                  list keys: id, org, created, revoked
  keys revoke KEY_ID         revoke a key: no new tokens; existing tokens fail at their next hello

Options:
  --data-dir DIR             the relay's data dir (default $SKYTALE_HOME/relay, i.e. ~/.skytale/relay)
  --store nats://HOST:PORT[,…]
                             the keys of relays run with the same --store (a NATS cluster)
  --json                     print JSON`;
const CMD = { command: "skytale keys", usage: USAGE };

/**
 * Runs `skytale keys`.
 *
 * @param args The arguments after `keys`.
 * @returns The exit code: 0 on success, 1 when the key to revoke does not exist.
 * @throws {UsageError} on unknown or missing arguments.
 */
export async function keysCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(CMD, args, {
    org: { type: "string" },
    "data-dir": { type: "string" },
    store: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  const [sub, ...rest] = positionals;
  if (values.help || sub === undefined) {
    logLine(USAGE);
    return values.help ? 0 : 2;
  }
  const dataDir = values["data-dir"] ??
    joinPath(skytaleHome(), "relay");
  if (sub === "create") {
    if (values.org === undefined || rest.length > 0) {
      throw new UsageError(`keys create needs --org ORG and nothing else\n${USAGE}`);
    }
  } else if (sub === "list") {
    if (rest.length > 0) throw new UsageError(`keys list takes no arguments\n${USAGE}`);
  } else if (sub === "revoke") {
    if (rest.length !== 1) throw new UsageError(`keys revoke needs one KEY_ID\n${USAGE}`);
  } else {
    throw new UsageError(`Unknown keys command "${sub}"\n${USAGE}`);
  }
  const nats = values.store;
  if (nats !== undefined && !nats.startsWith("nats://")) {
    throw new UsageError(`Option --store must be a nats:// URL, got "${nats}"\n${USAGE}`);
  }
  const where = nats ?? dataDir;
  const store: ApiKeyStore = nats
    ? await (await import("../relay/auth_nats.ts")).NatsAuthStore.open(nats)
    : await KeyStore.open(dataDir);
  try {
    if (sub === "create") {
      const { key, info } = await store.create(values.org!);
      await writeOut(
        values.json
          ? JSON.stringify({ ...info, key })
          : `id:      ${info.id}\norg:     ${info.org}\ncreated: ${info.created}\nkey:     ${key}`,
      );
      logLine("skytale keys: store the key now; it is not shown again");
      return 0;
    }
    if (sub === "list") {
      const keys = await store.list();
      if (values.json) await writeOut(JSON.stringify(keys));
      else if (keys.length > 0) {
        await writeOut(
          keys.map((k) =>
            `${k.id}  ${k.org}  ${k.created}  ${k.revoked ? `revoked ${k.revoked}` : "active"}`
          ).join("\n"),
        );
      }
      return 0;
    }
    const id = rest[0]!;
    if (!await store.revoke(id)) {
      logLine(`skytale keys: no key "${id}" in "${where}"`);
      return 1;
    }
    await writeOut(values.json ? JSON.stringify(await store.get(id)) : `revoked ${id}`);
    return 0;
  } finally {
    await store.close();
  }
}
