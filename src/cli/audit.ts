/**
 * `skytale audit`: read a channel's encrypted audit log from the relay with
 * only its audit key (`manager.exportAuditKey(channel)`), check its hash
 * chains and print it. The auditor need not be a member of the channel.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { env, logLine } from "../runtime/env.ts";
import { skytaleHome } from "../runtime/home.ts";
import { writeOut } from "./_out.ts";
import { parseCommandArgs } from "./_args.ts";
import { parseChannelName } from "../validate.ts";
import { type AuditReport, decodeAuditKey, readAuditLog } from "../audit/chain.ts";

const USAGE = `Usage: skytale audit <verify|export> CHANNEL --key KEY [options]

  audit verify CHANNEL       check the log: every entry decrypts and each member's chain is unbroken;
                             a missing, reordered or altered entry is reported with its position
  audit export CHANNEL       verify, then print the decrypted entries

Options:
  --key KEY                  the channel's audit key, skt_audit_… (or SKYTALE_AUDIT_KEY)
  --relay URL                the relay (default SKYTALE_RELAY, else the embedded local relay)
  --api-key KEY              an API key for an authenticated relay (default SKYTALE_API_KEY)
  --format jsonl|text        export's output (default jsonl)
  --json                     verify: print the report as JSON`;
const CMD = { command: "skytale audit", usage: USAGE };

/**
 * Runs `skytale audit`.
 *
 * @param args The arguments after `audit`.
 * @returns 0 if the log verifies, 1 if it does not.
 * @throws {UsageError} on unknown or missing arguments.
 */
export async function auditCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(CMD, args, {
    key: { type: "string" },
    relay: { type: "string" },
    "api-key": { type: "string" },
    format: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  const [sub, channel, ...rest] = positionals;
  if (values.help || sub === undefined) {
    logLine(USAGE);
    return values.help ? 0 : 2;
  }
  if (sub !== "verify" && sub !== "export") {
    throw new UsageError(`Unknown audit command "${sub}"\n${USAGE}`);
  }
  if (channel === undefined || rest.length > 0) {
    throw new UsageError(`audit ${sub} needs one CHANNEL\n${USAGE}`);
  }
  parseChannelName(channel);
  const keyText = values.key ?? env("SKYTALE_AUDIT_KEY");
  if (keyText === undefined) throw new UsageError(`audit ${sub} needs --key KEY\n${USAGE}`);
  const format = values.format ?? "jsonl";
  if (format !== "jsonl" && format !== "text") {
    throw new UsageError(`Option --format must be jsonl or text, got "${format}"\n${USAGE}`);
  }
  const key = decodeAuditKey(keyText);
  const report = await _read(channel, key, values.relay, values["api-key"]);
  if (sub === "export") {
    await writeOut(
      report.entries.map((e) =>
        format === "jsonl"
          ? JSON.stringify({
            position: e.position,
            writer: e.writer,
            i: e.i,
            epoch: e.epoch,
            ...e.event,
          })
          : `${e.position}\t${e.event.time}\t${e.writer}#${e.i}\tepoch ${e.epoch}\t${e.event.type}` +
            (e.event.seq !== undefined ? `\tseq ${e.event.seq}` : "")
      ).join("\n") || "",
    );
  } else if (values.json) {
    await writeOut(JSON.stringify(report));
  }
  for (const p of report.problems) {
    logLine(`skytale audit: position ${p.position}: ${p.reason}`);
  }
  const writers = Object.keys(report.heads).length;
  logLine(
    report.ok
      ? `skytale audit: "${channel}" verifies: ${report.entries.length} entries from ${writers} writer(s)`
      : `skytale audit: "${channel}" does not verify: first bad entry at position ${report.firstBad}`,
  );
  return report.ok ? 0 : 1;
}

async function _read(
  channel: string,
  key: Uint8Array,
  relayUrl: string | undefined,
  apiKey: string | undefined,
): Promise<AuditReport> {
  const { failoverConnector, RelayClient } = await import("../relay/client.ts");
  const { relayUrl: normalise } = await import("../channel/manager.ts");
  const endpoint = relayUrl ?? env("SKYTALE_RELAY");
  const key_ = apiKey ?? env("SKYTALE_API_KEY");
  const urls = endpoint?.split(",").map((u) => normalise(u.trim()));
  let token: (() => Promise<string | undefined>) | undefined;
  if (key_ !== undefined && urls !== undefined) {
    const { ApiKeyTokens, tokenApiUrl } = await import("../relay/auth_client.ts");
    const tokens = new ApiKeyTokens({ apiKey: key_, apiUrls: urls.map(tokenApiUrl) });
    token = () => tokens.token();
  }
  const connection = urls === undefined
    ? (await import("../relay/local.ts")).localRelay({
      port: Number(env("SKYTALE_LOCAL_PORT") ?? 5000),
      home: skytaleHome(),
    })
    : { connect: failoverConnector(urls) };
  const relay = new RelayClient({ ...connection, ...(token ? { token } : {}) });
  try {
    return await readAuditLog(relay, channel, key);
  } finally {
    await relay.close();
  }
}
