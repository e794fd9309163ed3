/**
 * Two agents on the SDK: Alice creates a channel, adds Bob, sends him a
 * message, and the program ends by itself.
 *
 * Both managers use the user's embedded local relay (`SKYTALE_RELAY` unset):
 * the first one hosts it in this process on `127.0.0.1:$SKYTALE_LOCAL_PORT`
 * (default 5000), with its log and secret in `$SKYTALE_HOME` (default
 * `~/.skytale`), unless another process of the user already does. Each agent's
 * identity key and channel state are kept there too. When the last manager
 * closes (here: at the end of the `await using` scope), the relay this process
 * hosts stops, so the process exits.
 *
 * Run it from the repository with any of:
 *
 * ```sh
 * deno run -A examples/two_agents.ts
 * node examples/two_agents.ts
 * bun examples/two_agents.ts
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { SkytaleChannelManager } from "@skytale/mcp";

// A fresh channel per run: channel names are unique on a relay, and the embedded relay's log persists.
const channel = `acme/research/results-${Date.now().toString(36)}`;

await using alice = new SkytaleChannelManager({ identity: "alice" });
await alice.create(channel);
await using bob = new SkytaleChannelManager({ identity: "bob" });
const welcome = await alice.addMember(channel, await bob.keyPackage());
await bob.join(channel, welcome);
await alice.send(channel, "analysis complete");
const msgs = await bob.receive(channel, { timeout: 5 });
for (const m of msgs) console.log(`${channel} #${m.seq} ${m.sender} (${m.senderId}): ${m.text}`);
if (msgs[0]?.text !== "analysis complete") throw new Error("Bob did not get Alice's message");
