/**
 * The `skytale` command line: with no arguments the stdio MCP server, and
 * `relay`, `mcp --http`, `expose`, `connect`, `console`, `keys`, `audit`.
 * `mod.ts` runs the same commands, but as the library's entry it loads the
 * whole SDK first; this entry loads only the command line, so the MCP server
 * answers `initialize` sooner (the SDK loads on the first tool call).
 *
 * ```sh
 * deno run -A cli.ts                    # the stdio MCP server on the embedded local relay
 * deno run -A cli.ts relay --port 5000  # a relay
 * deno run -A jsr:@skytale/mcp/cli      # once published
 * ```
 *
 * @module
 */
import { enableCompileCache } from "./src/runtime/compile_cache.ts";
import { cliArgs, exit } from "./src/runtime/env.ts";

if (import.meta.main) {
  // Under Node, the command line's modules are compiled once and kept on disk (see there).
  await enableCompileCache();
  const { runCli } = await import("./src/cli/main.ts");
  const code = await runCli(cliArgs());
  // The command is done and has flushed its output: exit now (see mod.ts).
  exit(code);
}
