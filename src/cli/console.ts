/**
 * `skytale console`: serves the web console (`src/console/`) until SIGINT or
 * SIGTERM, and prints its URL and the `--allow-origin` the relay needs.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { parseArgs } from "../runtime/args.ts";
import { env, logLine, onShutdownSignal } from "../runtime/env.ts";

const DEFAULT_PORT = 5080;

const USAGE = `Usage: skytale console [--port N] [--host HOST] [--relay URL]

Serves a web page where a person pastes an invite token, joins the channel it
names, sees the members and their fingerprints, reads and sends messages and
watches the channel's shared context. All encryption happens in the browser tab:
this server serves static files only (the page, and the SDK bundled for the
browser with esbuild at start). The relay must admit the page's origin: start it
with --allow-origin and the origin printed at start.

  --port N      port (default ${DEFAULT_PORT}; 0 picks a free one)
  --host HOST   loopback interface to listen on: 127.0.0.1 (default), ::1 or localhost
  --relay URL   the relay the page may connect to (default $SKYTALE_RELAY; unset: any
                ws:// or wss:// relay an invite names)`;

/** Parsed `skytale console` arguments. */
export interface ConsoleArgs {
  /** The port. */
  port: number;
  /** The interface. */
  host: string;
  /** The relay, if one is set. */
  relay: string | undefined;
}

/**
 * Parses the arguments of `skytale console`.
 *
 * @param argv The arguments after `console`.
 * @returns The options, or `undefined` for `--help`.
 * @throws {UsageError} On an unknown option or a bad port.
 */
export function parseConsoleArgs(argv: string[]): ConsoleArgs | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        relay: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${e instanceof Error ? e.message : e}\n${USAGE}`);
  }
  if (values.help) return undefined;
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!/^\d+$/.test(values.port ?? "0") || port > 65535) {
    throw new UsageError(`Option --port must be a port from 0 to 65535, got "${values.port}"`);
  }
  const relay = values.relay ?? env("SKYTALE_RELAY");
  return { port, host: values.host ?? "127.0.0.1", relay: relay || undefined };
}

/**
 * Runs `skytale console`.
 *
 * @param argv The arguments after `console`.
 * @returns The exit code, once stopped by a signal.
 */
export async function consoleCommand(argv: string[]): Promise<number> {
  const args = parseConsoleArgs(argv);
  if (!args) {
    logLine(USAGE);
    return 0;
  }
  const stopped = new Promise<string>((resolve) => onShutdownSignal(resolve));
  const { startConsole } = await import("../console/server.ts");
  logLine("skytale console: building the page (esbuild)…");
  const site = await startConsole({ hostname: args.host, port: args.port, relay: args.relay });
  logLine(`skytale console at ${site.url}`);
  logLine(
    `skytale console: the page does all encryption; this server only serves static files`,
  );
  logLine(
    `skytale console: the relay must admit this page: skytale relay --allow-origin ${site.origin}` +
      (args.relay ? ` (relay ${args.relay})` : ""),
  );
  if (!args.relay) {
    logLine(
      "skytale console: no --relay given: the page connects to whichever relay an invite names " +
        "(the embedded local relay refuses web pages; use a relay started with --allow-origin)",
    );
  }
  const signal = await stopped;
  logLine(`skytale console: ${signal}, stopping`);
  await site.close();
  return 0;
}
