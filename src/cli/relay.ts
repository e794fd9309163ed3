/**
 * `skytale relay`: run a relay until SIGINT or SIGTERM.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { parseArgs } from "../runtime/args.ts";
import { env, homeDir, logLine, onShutdownSignal } from "../runtime/env.ts";
import { joinPath } from "../runtime/fs.ts";
import { MemoryLog } from "../relay/log/memory.ts";
import { SqliteLog } from "../relay/log/sqlite.ts";
import type { RelayLog } from "../relay/log/types.ts";
import { DEFAULT_TOKEN_LIFETIME_SECONDS, RelayAuth } from "../relay/auth.ts";
import { DEFAULT_LIMITS, startRelay } from "../relay/server.ts";

const USAGE = `Usage: skytale relay [options]

Options:
  --host HOST             interface to listen on (default 127.0.0.1)
  --port N                port (default 5000; 0 picks a free one)
  --data-dir DIR          where the log lives (default $SKYTALE_DATA_DIR/relay or ~/.skytale/relay)
  --store sqlite|memory   log backend (default sqlite)
  --max-frame-bytes N     largest accepted frame (default ${DEFAULT_LIMITS.maxFrameBytes})
  --auth                  require a token in hello and serve POST /v1/tokens
                          (API keys: skytale keys create --org ORG, same --data-dir)
  --token-lifetime SECS   lifetime of issued tokens (default ${DEFAULT_TOKEN_LIFETIME_SECONDS})`;

function _int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw new UsageError(
      `Option --${name} must be an integer from ${min} to ${max}, got "${v}"\n${USAGE}`,
    );
  }
  return n;
}

/**
 * Runs a relay until a shutdown signal.
 *
 * @param args The arguments after `relay`.
 * @returns The exit code (0 after a clean shutdown).
 * @throws {UsageError} on unknown or malformed options.
 */
export async function relayCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        host: { type: "string" },
        port: { type: "string" },
        "data-dir": { type: "string" },
        store: { type: "string" },
        "max-frame-bytes": { type: "string" },
        auth: { type: "boolean" },
        "token-lifetime": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n${USAGE}`, { cause: e });
  }
  if (values.help) {
    logLine(USAGE);
    return 0;
  }
  const hostname = values.host ?? "127.0.0.1";
  const port = _int("port", values.port, 0, 65535) ?? 5000;
  const maxFrameBytes = _int("max-frame-bytes", values["max-frame-bytes"], 1024, 64 * 1024 * 1024);
  const store = values.store ?? "sqlite";
  if (store !== "sqlite" && store !== "memory") {
    throw new UsageError(`Option --store must be "sqlite" or "memory", got "${store}"\n${USAGE}`);
  }
  const dataDir = values["data-dir"] ??
    joinPath(env("SKYTALE_DATA_DIR") ?? joinPath(homeDir(), ".skytale"), "relay");
  const log: RelayLog = store === "sqlite"
    ? await SqliteLog.open(joinPath(dataDir, "relay.db"))
    : new MemoryLog();
  const tokenLifetime = _int("token-lifetime", values["token-lifetime"], 1, 30 * 86400);
  let auth: RelayAuth | undefined;
  try {
    auth = values.auth
      ? await RelayAuth.open({
        dataDir,
        ...(tokenLifetime !== undefined ? { tokenLifetimeSeconds: tokenLifetime } : {}),
      })
      : undefined;
  } catch (e) {
    await log.close();
    throw e;
  }
  let relay;
  try {
    relay = await startRelay({
      hostname,
      port,
      log,
      ...(maxFrameBytes !== undefined ? { limits: { maxFrameBytes } } : {}),
      ...(auth
        ? {
          authenticate: (token: string | undefined) => auth.authenticate(token),
          onRequest: (req: Request) => auth.handleRequest(req),
        }
        : {}),
    });
  } catch (e) {
    auth?.close();
    throw e;
  }
  const stopped = new Promise<string>((resolve) => onShutdownSignal(resolve));
  logLine(
    `skytale relay listening on ${relay.url} (${
      store === "sqlite" ? `log ${joinPath(dataDir, "relay.db")}` : "memory log"
    })${auth ? `, auth on (tokens for ${auth.tokenLifetimeSeconds} s)` : ""}`,
  );
  const signal = await stopped;
  logLine(`skytale relay: ${signal}, shutting down`);
  await relay.close();
  auth?.close();
  logLine("skytale relay: stopped");
  return 0;
}
