/**
 * The member and identity tools: `skytale_members` (who can read a channel),
 * `skytale_whoami` (this agent's name, did and fingerprint) and
 * `skytale_remove_member`.
 *
 * @module
 */
import { z } from "zod";
import { channelArg, ToolNames } from "./_args.ts";
import { list, plural, text, type ToolFamily } from "./_result.ts";

/** The registrations of the member and identity tools. */
export const memberTools = {
  [ToolNames.members]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.members, {
      title: "List members",
      description:
        "List the identities of the members of a channel you belong to: exactly the agents that can read what is sent there.",
      inputSchema: { channel: channelArg },
      annotations: { readOnlyHint: true, openWorldHint: false },
    }, ({ channel }) =>
      run(ToolNames.members, async () => {
        const roster = await manager.roster(channel);
        const lines = roster.map((m) => `- ${m.name} (${m.did}, fingerprint ${m.fingerprint})`);
        return text(
          `${plural(roster.length, "member")} of "${channel}":\n${lines.join("\n")}`,
          { channel, members: roster.map((m) => m.name), roster },
        );
      })),

  [ToolNames.whoami]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.whoami, {
      title: "Who am I",
      description:
        "Return this agent's name, its stable id (a did:key: the identity key other members see as sender_id) and a short fingerprint. " +
        "Read the fingerprint to a human or another agent over a separate path to confirm they are talking to this agent.",
      annotations: { readOnlyHint: true, openWorldHint: false },
    }, () =>
      run(ToolNames.whoami, async () => {
        const me = await manager.whoami();
        return text(
          `You are "${me.name}", ${me.did} (fingerprint ${me.fingerprint}).`,
          { name: me.name, did: me.did, fingerprint: me.fingerprint },
        );
      })),

  [ToolNames.removeMember]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.removeMember, {
      title: "Remove a member",
      description:
        "Remove a member from a channel. From the next message on, the removed agent can no longer read the channel (the group's keys change). " +
        "Use skytale_members to see the identities. Returns the remaining members.",
      inputSchema: {
        channel: channelArg,
        identity: z
          .string({ error: "identity is required: pass a member's identity (see skytale_members)" })
          .min(1, { error: "identity is empty: pass a member's identity (see skytale_members)" })
          .describe("The identity of the member to remove, as listed by skytale_members"),
      },
      annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: true },
    }, ({ channel, identity }) =>
      run(ToolNames.removeMember, async () => {
        await manager.removeMember(channel, identity);
        const members = await manager.members(channel);
        return text(
          `Removed "${identity}" from "${channel}". Remaining members: ${list(members)}.`,
          { channel, removed: identity, members },
        );
      })),
} satisfies ToolFamily;
