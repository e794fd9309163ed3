/**
 * The tools that bring an agent into a channel, both ways: with a key package
 * and a Welcome (`skytale_key_package`, `skytale_add_member`,
 * `skytale_join_channel`), or with an invite token (`skytale_invite`,
 * `skytale_join_with_token`), where the inviting server admits the joiner.
 *
 * @module
 */
import { z } from "zod";
import type { ChannelManagerLike } from "./_types.ts";
import { channelArg, ciphersuiteArg, hexArg, ToolNames } from "./_args.ts";
import { list, text, type ToolFamily } from "./_result.ts";

/** The result of a join: who is in the channel now. */
async function joined(manager: ChannelManagerLike, channel: string) {
  const members = await manager.members(channel);
  return text(
    `Joined "${channel}" as ${manager.identity}. Members: ${list(members)}. ` +
      "Read with skytale_receive, write with skytale_send.",
    { channel, members },
  );
}

/** The registrations of the joining tools. */
export const joiningTools = {
  [ToolNames.keyPackage]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.keyPackage, {
      title: "Make a key package",
      description:
        `Create a fresh MLS key package for this agent (${manager.identity}): the public half of a one-time key that lets a channel member add you. ` +
        "Use it when you want to join a channel someone else runs: give the returned hex to a member, who passes it to skytale_add_member and gives you back a Welcome for skytale_join_channel. " +
        "The private half stays on this machine until used. For a post-quantum channel pass its ciphersuite. Returns the key package as hex.",
      inputSchema: { ciphersuite: ciphersuiteArg },
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
    }, ({ ciphersuite }) =>
      run(ToolNames.keyPackage, async () => {
        const hex = await manager.keyPackage(ciphersuite ? { ciphersuite } : {});
        return text(
          `Key package for ${manager.identity} (give it to a member of the channel for skytale_add_member):\n${hex}`,
          { identity: manager.identity, key_package_hex: hex },
        );
      })),

  [ToolNames.addMember]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.addMember, {
      title: "Add a member",
      description:
        "Add another agent to a channel you are a member of, using the key package that agent made with skytale_key_package. " +
        "Returns a Welcome (hex) that you must give to that agent: it joins by calling skytale_join_channel with the same channel and the Welcome. " +
        "Every current member sees the new member from then on; the new member cannot read earlier messages.",
      inputSchema: {
        channel: channelArg,
        key_package_hex: hexArg("key_package_hex", "skytale_key_package on the joining agent")
          .describe("The joining agent's KeyPackage, hex, as returned by its skytale_key_package"),
      },
      annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
    }, ({ channel, key_package_hex }) =>
      run(ToolNames.addMember, async () => {
        const before = await manager.members(channel).catch(() => undefined);
        const welcome = await manager.addMember(channel, key_package_hex.trim());
        const after = await manager.members(channel).catch(() => undefined);
        const added = before && after ? after.filter((m) => !before.includes(m)) : [];
        const who = added.length > 0 ? `"${added.join('", "')}"` : "the new member";
        return text(
          `Added ${who} to "${channel}". Give them this Welcome; they join with skytale_join_channel(channel="${channel}", welcome_hex=<this hex>):\n${welcome}`,
          { channel, added, welcome_hex: welcome },
        );
      })),

  [ToolNames.joinChannel]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.joinChannel, {
      title: "Join from a Welcome",
      description:
        "Join a channel using the Welcome (hex) a member made for your key package with skytale_add_member. " +
        "Use the same channel name the member used. After joining, read with skytale_receive and write with skytale_send. " +
        "Returns the channel's members.",
      inputSchema: {
        channel: channelArg,
        welcome_hex: hexArg("welcome_hex", "skytale_add_member on a member of the channel")
          .describe("The Welcome, hex, as returned by skytale_add_member on a member's side"),
      },
      annotations: { destructiveHint: false, openWorldHint: true },
    }, ({ channel, welcome_hex }) =>
      run(ToolNames.joinChannel, async () => {
        await manager.join(channel, welcome_hex.trim());
        return await joined(manager, channel);
      })),

  [ToolNames.invite]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.invite, {
      title: "Invite to a channel",
      description:
        "Make an invite token (skt_inv_…) for a channel you are a member of. Give it to the agent that should join: it calls skytale_join_with_token with the channel and the token, " +
        "and this server admits it automatically (no key package or Welcome to copy). This server must keep running until the other agent has joined. " +
        "The token expires and can be used a limited number of times. Returns the token.",
      inputSchema: { channel: channelArg },
      annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
    }, ({ channel }) =>
      run(ToolNames.invite, async () => {
        const token = await manager.invite(channel);
        return text(
          `Invite token for "${channel}" (the other agent calls skytale_join_with_token(channel="${channel}", token=<this token>); keep this server running until it has joined):\n${token}`,
          { channel, token },
        );
      })),

  [ToolNames.joinWithToken]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.joinWithToken, {
      title: "Join with an invite token",
      description:
        "Join a channel with an invite token (skt_inv_…) made by a member with skytale_invite. Waits until the inviting agent's server admits you. " +
        "Use the channel name that came with the token. Returns the channel's members.",
      inputSchema: {
        channel: channelArg,
        token: z
          .string({ error: 'token is required: pass the "skt_inv_…" token from skytale_invite' })
          .startsWith("skt_inv_", {
            error:
              'token must be an invite token starting with "skt_inv_", as returned by skytale_invite',
          })
          .describe('The invite token "skt_inv_…" returned by skytale_invite on a member\'s side'),
      },
      annotations: { destructiveHint: false, openWorldHint: true },
    }, ({ channel, token }) =>
      run(ToolNames.joinWithToken, async () => {
        await manager.joinWithToken(channel, token.trim());
        return await joined(manager, channel);
      })),
} satisfies ToolFamily;
