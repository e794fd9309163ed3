/**
 * `skytale expose CHANNEL -- COMMAND ARGS…`: serves any stdio MCP server to
 * the members of an end-to-end encrypted channel, with no change to it.
 *
 * Each remote client session (a member, keyed by its MLS identity, and its
 * client's session id) gets its own child process. MCP sessions are stateful
 * (initialize and its negotiated capabilities, log level, subscriptions,
 * roots, request ids), and a stdio server is written for exactly one client,
 * so multiplexing several sessions into one child would mix their state and
 * clash their ids; a process per session keeps every server correct and
 * isolates one client's crash or hang from the others. The cost is one
 * process per session, bounded by `--max-sessions` and reaped when the
 * client closes or leaves the channel.
 *
 * Clients reach it by its did, which it prints with the invite: `connect`
 * talks only to that did, and requests and results are sealed between the
 * two (see `src/mcp/transport.ts`), so other members of the channel can
 * neither answer in its place nor read the traffic.
 *
 * @module
 */
import { z } from "zod";
import { UsageError } from "../errors.ts";
import { intOption, parseCommandArgs } from "./_args.ts";
import { exit, logLine, onShutdownSignal } from "../runtime/env.ts";
import { type ChildExit, type LineProcess, spawnLineProcess } from "../runtime/process.ts";
import {
  BridgeErrorCodes,
  type ChannelSession,
  type JsonRpcMessage,
  type McpServerLike,
  type McpTransport,
} from "../mcp/transport.ts";

const USAGE =
  `Usage: skytale expose CHANNEL [--uses N] [--ttl SECONDS] [--no-invite] [--max-sessions N] -- COMMAND [ARGS...]

Serves the stdio MCP server COMMAND to the members of CHANNEL (created if this
identity is not a member yet), one child process per remote client session.
Prints this identity's did and an invite token on stderr, and the command a
client runs: \`skytale connect CHANNEL --server DID --invite TOKEN\`. Requests and
results are sealed between each client and this server: other members of the
channel see neither.

  --uses N            how many members the invite admits (default 10)
  --ttl SECONDS       how long the invite is valid (default 86400)
  --no-invite         print no invite (members join by key package, or already are)
  --max-sessions N    sessions at once (default 64)

Environment: SKYTALE_IDENTITY, SKYTALE_RELAY, SKYTALE_API_KEY, SKYTALE_DATA_DIR.`;

/** Parsed `skytale expose` arguments. */
export interface ExposeOptions {
  /** The channel. */
  channel: string;
  /** The stdio server's program. */
  command: string;
  /** Its arguments. */
  args: string[];
  /** Members the invite admits, or 0 for no invite. */
  uses: number;
  /** The invite's lifetime in seconds. */
  ttl: number;
  /** Sessions at once. */
  maxSessions: number;
}

const CMD = { command: "skytale expose", usage: USAGE };

/**
 * Parses the arguments of `skytale expose`.
 *
 * @param argv The arguments after `expose`.
 * @returns The options, or `undefined` for `--help`.
 * @throws {UsageError} On a missing channel or command, or a bad option.
 */
export function parseExposeArgs(argv: string[]): ExposeOptions | undefined {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const cmd = dash < 0 ? [] : argv.slice(dash + 1);
  const { values, positionals } = parseCommandArgs(CMD, own, {
    uses: { type: "string" },
    ttl: { type: "string" },
    "no-invite": { type: "boolean" },
    "max-sessions": { type: "string" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (values.help) return undefined;
  const [channel, ...extra] = positionals;
  if (extra.length > 0) {
    throw new UsageError(`Unexpected argument "${extra[0]}" for "skytale expose"\n${USAGE}`);
  }
  const uses = values["no-invite"] ? 0 : intOption(CMD, "--uses", values.uses, 1, 1000) ?? 10;
  const ttl = intOption(CMD, "--ttl", values.ttl, 1, 30 * 86400) ?? 86400;
  const maxSessions = intOption(CMD, "--max-sessions", values["max-sessions"], 1, 10_000) ?? 64;
  if (channel === undefined) throw new UsageError(`Missing CHANNEL\n${USAGE}`);
  if (cmd.length === 0) {
    throw new UsageError(`Missing the server command after "--"\n${USAGE}`);
  }
  return { channel, command: cmd[0]!, args: cmd.slice(1), uses, ttl, maxSessions };
}

function describeExit(e: ChildExit): string {
  if (e.error) return `could not be started (${e.error})`;
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited with code ${e.code}`;
}

/** A JSON-RPC message as a child writes it; other fields pass through untouched. */
const CHILD_MESSAGE = z.looseObject({
  jsonrpc: z.literal("2.0"),
  id: z.union([z.string(), z.number()]).optional(),
  method: z.string().optional(),
  params: z.unknown().optional(),
  result: z.unknown().optional(),
  error: z.looseObject({ code: z.number(), message: z.string(), data: z.unknown().optional() })
    .optional(),
});

/** Every child still running, also those of ended sessions that are still stopping. */
const children = new Set<LineProcess>();

/** One remote session served by one child process. */
class ChildSession implements McpServerLike {
  #session: ChannelSession;
  #command: string;
  #args: string[];
  #t: McpTransport | undefined;
  #child: LineProcess | undefined;
  #pending = new Set<string | number>();
  #closing: Promise<void> | undefined;

  constructor(session: ChannelSession, command: string, args: string[]) {
    this.#session = session;
    this.#command = command;
    this.#args = args;
  }

  async connect(t: McpTransport): Promise<void> {
    this.#t = t;
    const child = spawnLineProcess(this.#command, this.#args, {
      onLine: (line) => this.#fromChild(line),
    });
    this.#child = child;
    children.add(child);
    void child.exited.then(() => children.delete(child));
    t.onmessage = (m) => this.#toChild(m);
    t.onclose = () => void this.close();
    await t.start();
    logLine(
      `skytale expose: session of "${this.#session.identity}" started (pid ${child.pid ?? "?"})`,
    );
    void child.exited.then((e) => this.#childExited(e));
  }

  #toChild(m: JsonRpcMessage): void {
    if (m.method !== undefined && m.id !== undefined) this.#pending.add(m.id);
    void this.#child!.writeLine(JSON.stringify(m));
  }

  #fromChild(line: string): void {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      logLine(`skytale expose: ignored a line that is not JSON from the server: ${line}`);
      return;
    }
    const parsed = CHILD_MESSAGE.safeParse(json);
    if (!parsed.success) {
      logLine(
        `skytale expose: ignored a line that is not a JSON-RPC message from the server: ${line}`,
      );
      return;
    }
    const m: JsonRpcMessage = parsed.data;
    if (m.method === undefined && m.id !== undefined) this.#pending.delete(m.id);
    if (this.#closing) return; // the session is over: nobody is listening
    this.#t?.send(m).catch((e) =>
      logLine(`skytale expose: could not forward to "${this.#session.identity}": ${e.message}`)
    );
  }

  async #childExited(e: ChildExit): Promise<void> {
    if (this.#closing) return;
    const why = `The MCP server "${this.#command}" ${describeExit(e)}`;
    logLine(`skytale expose: ${why} (session of "${this.#session.identity}")`);
    const t = this.#t!;
    await Promise.all([...this.#pending].map((id) =>
      t.send({
        jsonrpc: "2.0",
        id,
        error: { code: BridgeErrorCodes.connectionClosed, message: `${why} before answering` },
      }).catch(() => {})
    ));
    this.#pending.clear();
    await this.close();
  }

  close(): Promise<void> {
    this.#closing ??= Promise.resolve().then(async () => {
      await this.#t?.close();
      await this.#child?.stop();
    });
    return this.#closing;
  }
}

/**
 * Runs `skytale expose`. It serves until SIGINT/SIGTERM, then ends every
 * session (stopping their child processes) and exits.
 *
 * @param argv The arguments after `expose`.
 * @returns The exit code (only for `--help`; otherwise the process exits).
 * @throws {UsageError} On bad arguments.
 */
export async function exposeCommand(argv: string[]): Promise<number> {
  const opts = parseExposeArgs(argv);
  if (!opts) {
    logLine(USAGE);
    return 0;
  }
  const { SkytaleChannelManager } = await import("../channel/manager.ts");
  const { serveChannel } = await import("../mcp/transport.ts");
  const mgr = new SkytaleChannelManager();
  const mine = (await mgr.channels()).find((c) => c.channel === opts.channel && c.active);
  if (!mine) await mgr.create(opts.channel);
  const serving = await serveChannel(
    mgr,
    opts.channel,
    (session) => new ChildSession(session, opts.command, opts.args),
    {
      maxSessions: opts.maxSessions,
      onSession: (e) => {
        if (e.type === "end") {
          logLine(`skytale expose: session of "${e.session.identity}" ended (${e.reason})`);
        }
      },
    },
  );
  const me = await mgr.whoami();
  logLine(`skytale expose: server did: ${me.did} (fingerprint ${me.fingerprint})`);
  let token: string | undefined;
  if (opts.uses > 0) {
    token = await mgr.invite(opts.channel, { uses: opts.uses, ttl: opts.ttl });
    logLine(`skytale expose: invite token for "${opts.channel}": ${token}`);
  }
  logLine(
    `skytale expose: clients run: skytale connect ${opts.channel} --server ${me.did}${
      token === undefined ? "" : ` --invite ${token}`
    }`,
  );
  logLine(
    `skytale expose: serving "${
      [opts.command, ...opts.args].join(" ")
    }" on "${opts.channel}" as "${mgr.identity}" (${me.did})`,
  );
  const signal = await new Promise<string>((resolve) => onShutdownSignal(resolve));
  logLine(`skytale expose: shutting down (${signal})`);
  const force = setTimeout(() => exit(1), 10_000);
  await serving.close();
  // Children of sessions that ended just before may still be in their grace period.
  await Promise.all([...children].map((c) => c.stop(500)));
  await mgr.close();
  clearTimeout(force);
  exit(0);
}
