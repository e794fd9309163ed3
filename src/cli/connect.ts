/**
 * `skytale connect CHANNEL --server DID [--invite TOKEN]`: a stdio MCP server
 * that forwards everything, end-to-end encrypted, to the server exposed on the
 * channel (`skytale expose`). Any stdio MCP client (Claude Desktop, the MCP
 * Inspector, an SDK `Client`) uses the remote server with no code on either
 * side.
 *
 * The server is named by its did, which `expose` prints, and is required:
 * only frames that member sent (as MLS proves) are accepted, and requests are
 * sealed to its key, so another member of the channel can neither answer
 * first and take the session over nor read it. Without `--server` there is
 * nobody to seal the first request to, and locking on to whoever answers
 * first is exactly the take-over this prevents, so `connect` refuses.
 *
 * Every request gets exactly one answer: the server's, or a JSON-RPC error
 * when the session ends (the exposed process exited, the server stopped or
 * the member was removed), when a message cannot be sent (relay lost), or
 * when the server sends nothing for `--timeout` seconds while requests wait.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { errorMessage } from "../_util.ts";
import { didPublicKey } from "../identity.ts";
import { exit, logLine, onShutdownSignal } from "../runtime/env.ts";
import { onStdinEnd, processStdio, releaseStdin } from "../runtime/stdio.ts";
import { StdioServerTransport } from "../mcp/_sdk_server.ts";
import { BridgeErrorCodes, type JsonRpcMessage } from "../mcp/transport.ts";
import type { SkytaleTransport } from "../mcp/transport.ts";
import type { SkytaleChannelManager } from "../channel/manager.ts";
import { parseCommandArgs } from "./_args.ts";

const USAGE = `Usage: skytale connect CHANNEL --server DID [--invite TOKEN] [--timeout SECONDS]

A stdio MCP server that forwards to the MCP server exposed on CHANNEL with
\`skytale expose\`, end-to-end encrypted. Put it in an MCP client's config.
\`skytale expose\` prints the whole command line.

  --server DID        the exposing member's did (did:key:z6Mk…, printed by expose);
                      nothing from any other member is accepted
  --invite TOKEN      join CHANNEL with this invite first (skipped if already a member)
  --timeout SECONDS   answer a waiting request with an error after this long
                      without any message from the server (default 120)

Environment: SKYTALE_IDENTITY, SKYTALE_RELAY, SKYTALE_API_KEY, SKYTALE_DATA_DIR.`;

const CMD = { command: "skytale connect", usage: USAGE };

/** Parsed `skytale connect` arguments. */
export interface ConnectOptions {
  /** The channel. */
  channel: string;
  /** An invite token to join with. */
  invite?: string;
  /** The exposing member's did. */
  server: string;
  /** Seconds without a message from the server before waiting requests fail. */
  timeout: number;
}

/**
 * Parses the arguments of `skytale connect`.
 *
 * @param argv The arguments after `connect`.
 * @returns The options, or `undefined` for `--help`.
 * @throws {UsageError} On a missing channel or a bad option.
 */
export function parseConnectArgs(argv: string[]): ConnectOptions | undefined {
  const { values, positionals } = parseCommandArgs(CMD, argv, {
    invite: { type: "string" },
    server: { type: "string" },
    timeout: { type: "string" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (values.help) return undefined;
  const [channel, ...extra] = positionals;
  if (extra.length > 0) {
    throw new UsageError(`Unexpected argument "${extra[0]}" for "skytale connect"\n${USAGE}`);
  }
  const server = values.server;
  if (server !== undefined) {
    try {
      didPublicKey(server);
    } catch {
      throw new UsageError(
        `Option --server needs the server's did ("did:key:z6Mk…", printed by \`skytale expose\`), got "${server}"`,
      );
    }
  }
  let timeout = 120;
  if (values.timeout !== undefined) {
    timeout = Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 86400) {
      throw new UsageError(
        `Option --timeout needs seconds from 0 to 86400, got "${values.timeout}"`,
      );
    }
  }
  if (channel === undefined) throw new UsageError(`Missing CHANNEL\n${USAGE}`);
  if (server === undefined) {
    throw new UsageError(
      `Missing --server DID: name the exposing member's did, as \`skytale expose\` prints it\n${USAGE}`,
    );
  }
  return {
    channel,
    ...(values.invite !== undefined ? { invite: values.invite } : {}),
    server,
    timeout,
  };
}

const idKey = (id: string | number) => `${typeof id}:${id}`;

/**
 * Runs `skytale connect`: joins if asked, then forwards between stdio and the
 * channel until stdin closes or a signal arrives, and exits.
 *
 * @param argv The arguments after `connect`.
 * @returns The exit code (only for `--help`; otherwise the process exits).
 * @throws {UsageError} On bad arguments, or when not a member and no invite is given.
 */
export async function connectCommand(argv: string[]): Promise<number> {
  const opts = parseConnectArgs(argv);
  if (!opts) {
    logLine(USAGE);
    return 0;
  }
  const { SkytaleChannelManager } = await import("../channel/manager.ts");
  const { SkytaleTransport } = await import("../mcp/transport.ts");
  const mgr = new SkytaleChannelManager();
  await _joinIfNeeded(mgr, opts);
  let remote: SkytaleTransport;
  try {
    remote = new SkytaleTransport(mgr, opts.channel, { serverDid: opts.server });
  } catch (e) {
    await mgr.close();
    throw new UsageError(`Option --server: ${errorMessage(e)}`, { cause: e });
  }
  const { stdin, stdout } = processStdio();
  const local = new StdioServerTransport(stdin, stdout);
  const bridge = _bridge(local, remote, opts);
  await remote.start();
  await local.start();
  logLine(
    `skytale connect: forwarding stdio to the MCP server ${
      remote.server === undefined ? "" : `"${remote.server}" `
    }(${opts.server}) on "${opts.channel}"`,
  );

  const reason = await new Promise<string>((resolve) => {
    onStdinEnd(() => resolve("stdin closed"));
    onShutdownSignal(resolve);
  });
  logLine(`skytale connect: shutting down (${reason})`);
  const force = setTimeout(() => exit(1), 10_000);
  bridge.stop();
  await remote.close();
  await local.close().catch(() => {});
  releaseStdin();
  await mgr.close();
  clearTimeout(force);
  exit(0);
}

/** Joins the channel with the invite unless this identity is a member already. */
async function _joinIfNeeded(mgr: SkytaleChannelManager, opts: ConnectOptions): Promise<void> {
  const member = (await mgr.channels()).some((c) => c.channel === opts.channel && c.active);
  if (member) return;
  if (opts.invite === undefined) {
    throw new UsageError(
      `"${mgr.identity}" is not a member of "${opts.channel}": pass --invite TOKEN from \`skytale expose\``,
    );
  }
  await mgr.joinWithToken(opts.channel, opts.invite, { timeout: 60 });
  logLine(`skytale connect: joined "${opts.channel}" as "${mgr.identity}"`);
}

/**
 * Forwards between the local stdio client and the remote server, answering
 * every request exactly once: with the server's answer, or with an error when
 * it cannot be sent, times out, or the session ends.
 *
 * @returns `stop()`, which ends the bridge (every later request gets an error).
 */
function _bridge(
  local: StdioServerTransport,
  remote: SkytaleTransport,
  opts: ConnectOptions,
): { stop(): void } {
  const timeoutMs = opts.timeout * 1000;
  /** Requests from the local client still waiting for an answer, by id, with their deadline. */
  const pending = new Map<string, { id: string | number; deadline: number }>();
  let ended: string | undefined;

  const answerError = (id: string | number, code: number, message: string) => {
    if (!pending.delete(idKey(id)) && ended === undefined) return;
    local.send({ jsonrpc: "2.0", id, error: { code, message } }).catch(() => {});
  };

  local.onmessage = (msg) => {
    const m = msg as JsonRpcMessage;
    const isRequest = m.method !== undefined && m.id !== undefined;
    if (ended !== undefined) {
      if (isRequest) answerError(m.id!, BridgeErrorCodes.connectionClosed, ended);
      return;
    }
    if (isRequest) pending.set(idKey(m.id!), { id: m.id!, deadline: Date.now() + timeoutMs });
    if (m.method === "notifications/cancelled") {
      const rid = (m.params as { requestId?: string | number } | undefined)?.requestId;
      if (rid !== undefined) pending.delete(idKey(rid));
    }
    remote.send(m).catch((e: Error) => {
      logLine(`skytale connect: could not send to "${opts.channel}": ${e.message}`);
      if (isRequest) {
        answerError(
          m.id!,
          BridgeErrorCodes.connectionClosed,
          `Could not reach the MCP server on "${opts.channel}": ${e.message}`,
        );
      }
    });
  };
  local.onerror = (e) => logLine(`skytale connect: stdio error: ${e.message}`);

  remote.onmessage = (m) => {
    const now = Date.now();
    // Any message shows the server is alive: waiting requests get a fresh deadline.
    for (const p of pending.values()) p.deadline = now + timeoutMs;
    if (m.method === undefined && m.id !== undefined && !pending.delete(idKey(m.id))) {
      return; // an answer to a request already failed locally (timed out): drop it
    }
    local.send(m as Parameters<typeof local.send>[0]).catch((e: Error) =>
      logLine(`skytale connect: could not write to stdout: ${e.message}`)
    );
  };
  remote.onerror = (e) => logLine(`skytale connect: ${e.message}`);
  remote.onclose = () => {
    ended = `The remote MCP session on "${opts.channel}" ended: ${remote.closeReason ?? "closed"}`;
    logLine(`skytale connect: ${ended}`);
    for (const p of [...pending.values()]) {
      answerError(p.id, BridgeErrorCodes.connectionClosed, ended);
    }
  };

  const ticker = setInterval(() => {
    const now = Date.now();
    for (const p of [...pending.values()]) {
      if (p.deadline <= now) {
        answerError(
          p.id,
          BridgeErrorCodes.requestTimeout,
          `No answer from the MCP server on "${opts.channel}" within ${opts.timeout} s`,
        );
      }
    }
  }, Math.min(1000, Math.max(50, timeoutMs / 4)));
  return {
    stop() {
      clearInterval(ticker);
      ended ??= "The bridge is shutting down";
    },
  };
}
