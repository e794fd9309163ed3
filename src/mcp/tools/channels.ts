/**
 * The channel lifecycle tools: `skytale_create_channel`, `skytale_channels`
 * and `skytale_leave`.
 *
 * @module
 */
import { channelArg, ciphersuiteArg, PQ_SUITE, ToolNames } from "./_args.ts";
import { list, plural, text, type ToolFamily } from "./_result.ts";

/** The registrations of the channel lifecycle tools. */
export const channelTools = {
  [ToolNames.createChannel]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.createChannel, {
      title: "Create an encrypted channel",
      description:
        `Create a new end-to-end encrypted channel (an MLS group) with this agent (${manager.identity}) as its only member. ` +
        "Use it to start a private conversation between agents; then bring others in with skytale_invite (easiest: they join with the token) " +
        "or with skytale_add_member (needs their skytale_key_package). Fails if the channel already exists. " +
        `Optional ciphersuite: "${PQ_SUITE}" makes a post-quantum (X-Wing hybrid) channel; members then need key packages of that suite. ` +
        "Returns a confirmation.",
      inputSchema: { channel: channelArg, ciphersuite: ciphersuiteArg },
      annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
    }, ({ channel, ciphersuite }) =>
      run(ToolNames.createChannel, async () => {
        await manager.create(channel, ciphersuite ? { ciphersuite } : {});
        return text(
          `Created channel "${channel}"; ${manager.identity} is its only member. ` +
            "Invite others with skytale_invite, or add them with skytale_add_member using their key package.",
          { channel, members: [manager.identity] },
        );
      })),

  [ToolNames.channels]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.channels, {
      title: "List channels",
      description:
        `List the channels this agent (${manager.identity}) belongs to, with their members and MLS epoch (it grows with each membership change). ` +
        "Use it to recall channel names or check who can read a channel.",
      annotations: { readOnlyHint: true, openWorldHint: false },
    }, () =>
      run(ToolNames.channels, async () => {
        const channels = await manager.channels();
        const structured = {
          identity: manager.identity,
          channels: channels.map((c) => ({
            channel: c.channel,
            epoch: c.epoch,
            members: c.members,
            active: c.active ?? true,
          })),
        };
        if (channels.length === 0) {
          return text(
            `${manager.identity} is in no channels yet. Create one with skytale_create_channel, or join one with skytale_join_with_token or skytale_join_channel.`,
            structured,
          );
        }
        const lines = channels.map((c) =>
          `- ${c.channel} (epoch ${c.epoch}; members: ${list(c.members)})${
            c.active === false ? " [removed: no longer a member]" : ""
          }`
        );
        return text(
          `${manager.identity} is in ${plural(channels.length, "channel")}:\n${lines.join("\n")}`,
          structured,
        );
      })),

  [ToolNames.leave]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.leave, {
      title: "Leave a channel",
      description:
        "Leave a channel: this agent stops receiving its messages and the others are told it left. To come back, it needs a new invite or Welcome. " +
        "Returns a confirmation.",
      inputSchema: { channel: channelArg },
      annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: true },
    }, ({ channel }) =>
      run(ToolNames.leave, async () => {
        await manager.leave(channel);
        return text(`${manager.identity} left "${channel}".`, { channel });
      })),
} satisfies ToolFamily;
