/**
 * The tool names and the words the tools use for their arguments, without the
 * argument schemas (`_args.ts`): what the server's always-loaded part (the
 * error hints of `_result.ts`, the resources) needs before the tools are
 * registered (docs/DECISIONS.md, "Cold start").
 *
 * @module
 */

/** The names of the tools, as registered. */
export const ToolNames = {
  createChannel: "skytale_create_channel",
  keyPackage: "skytale_key_package",
  addMember: "skytale_add_member",
  joinChannel: "skytale_join_channel",
  send: "skytale_send",
  receive: "skytale_receive",
  channels: "skytale_channels",
  invite: "skytale_invite",
  joinWithToken: "skytale_join_with_token",
  members: "skytale_members",
  removeMember: "skytale_remove_member",
  leave: "skytale_leave",
  whoami: "skytale_whoami",
  wait: "skytale_wait",
} as const;

/** The name of one tool. */
export type ToolName = typeof ToolNames[keyof typeof ToolNames];

/** The longest `timeout` `skytale_receive` accepts, in seconds. */
export const MAX_RECEIVE_TIMEOUT = 50;

/** How the messages describe a channel name. */
export const CHANNEL_HINT =
  'a name of the form "org/namespace/service", e.g. "acme/research/results"';

/** The post-quantum hybrid suite (X-Wing KEM, AES-256-GCM, SHA-512, Ed25519). */
export const PQ_SUITE = "MLS_256_XWING_AES256GCM_SHA512_Ed25519";
