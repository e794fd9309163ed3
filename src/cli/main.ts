/**
 * The `skytale` command line: subcommand dispatch.
 *
 * @module
 */
import { SkytaleError, UsageError } from "../errors.ts";
import { logLine } from "../runtime/env.ts";

const USAGE = `Usage: skytale [command] [options]

Commands:
  mcp [--http HOST:PORT]     run the MCP server (default command; stdio unless --http)
  relay [--host H] [--port N] [--data-dir DIR] [--store sqlite|memory]
                             run a relay
  keys create --org ORG | list | revoke KEY_ID
                             manage a relay's API keys
  expose CHANNEL -- COMMAND [ARGS...]
                             serve a stdio MCP server to a channel's members
  connect CHANNEL [--invite TOKEN]
                             a stdio MCP server forwarding to the one exposed on CHANNEL
  audit verify|export CHANNEL --key KEY [--relay URL] [--format jsonl]
                             check and read a channel's encrypted audit log
  console [--port N] [--host H] [--relay URL]
                             serve a web page to join a channel by invite, read and send
                             messages and watch its shared context (crypto in the page)
  help                       show this help`;

/**
 * Runs the CLI with the given arguments.
 *
 * @param argv The arguments after the program name.
 * @returns The process exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case "mcp": {
      const { mcpCommand } = await import("./mcp.ts");
      return await mcpCommand(cmd === undefined ? argv : rest);
    }
    case "relay": {
      const { relayCommand } = await import("./relay.ts");
      return await relayCommand(rest);
    }
    case "keys": {
      const { keysCommand } = await import("./keys.ts");
      return await keysCommand(rest);
    }
    case "expose": {
      const { exposeCommand } = await import("./expose.ts");
      return await exposeCommand(rest);
    }
    case "connect": {
      const { connectCommand } = await import("./connect.ts");
      return await connectCommand(rest);
    }
    case "audit": {
      const { auditCommand } = await import("./audit.ts");
      return await auditCommand(rest);
    }
    case "console": {
      const { consoleCommand } = await import("./console.ts");
      return await consoleCommand(rest);
    }
    case "help":
    case "--help":
    case "-h":
      logLine(USAGE);
      return 0;
    default:
      if (cmd.startsWith("-")) {
        const { mcpCommand } = await import("./mcp.ts");
        return await mcpCommand(argv);
      }
      throw new UsageError(`Unknown command "${cmd}"\n${USAGE}`);
  }
}

/**
 * Runs the CLI and maps errors to exit codes: usage errors print usage and exit 2.
 *
 * @param argv The arguments after the program name.
 * @returns The process exit code.
 */
export async function runCli(argv: string[]): Promise<number> {
  try {
    return await main(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      logLine(`skytale: ${e.message}`);
      return 2;
    }
    if (e instanceof SkytaleError) {
      logLine(`skytale: ${e.message} (${e.code})`);
      return 1;
    }
    logLine(`skytale: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return 1;
  }
}
