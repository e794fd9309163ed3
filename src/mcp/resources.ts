/**
 * Channels as MCP resources: `resources/list` names this agent's channels as
 * `skytale://channel/{org}/{ns}/{svc}`; `resources/read` returns a channel's
 * recent messages (the manager's in-memory history: nothing is consumed, so a
 * later `skytale_receive` still returns them once); `resources/subscribe`
 * gets one `notifications/resources/updated` per burst of new messages; and
 * `notifications/resources/list_changed` follows joins, leaves and removals.
 *
 * @module
 */
import {
  type McpServer,
  ResourceTemplate,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "./_sdk_server.ts";
import type { ChannelListing, ChannelManagerLike } from "./tools.ts";
import { type ContextManagerLike, hasContext } from "./tools/_types.ts";
import { messageJson } from "./tools/_result.ts";

/** The URI scheme and prefix of a channel resource. */
export const CHANNEL_URI_PREFIX = "skytale://channel/";

/** The URI prefix of a channel's shared context as a resource. */
export const CONTEXT_URI_PREFIX = "skytale://context/";

/** How many recent messages `resources/read` returns. */
const READ_MAX = 100;

/**
 * The resource URI of a channel.
 *
 * @param channel The channel name.
 * @returns `skytale://channel/org/ns/svc`.
 */
export function channelUri(channel: string): string {
  return CHANNEL_URI_PREFIX + channel;
}

/** The channels this agent is still a member of. */
async function activeChannels(manager: ChannelManagerLike): Promise<ChannelListing[]> {
  return (await manager.channels()).filter((c) => c.active !== false);
}

/** The channel a template's `{org}/{ns}/{svc}` names. */
function channelOf(vars: Record<string, string | string[]>): string {
  return `${vars.org}/${vars.ns}/${vars.svc}`;
}

/** A `resources/read` result holding one JSON document. */
function jsonContents(uri: URL, value: unknown) {
  return {
    contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(value) }],
  };
}

/** Channel names of this agent (active ones) that start with `prefix` in part `index`. */
async function suggest(
  manager: ChannelManagerLike,
  index: number,
  value: string,
  known: Record<string, string> | undefined,
): Promise<string[]> {
  const parts = (await activeChannels(manager)).map((c) => c.channel.split("/"));
  const keys = ["org", "ns", "svc"];
  const out = new Set<string>();
  for (const p of parts) {
    // Parts already chosen narrow the suggestions for the next one.
    if (keys.slice(0, index).some((k, i) => known?.[k] !== undefined && known[k] !== p[i])) {
      continue;
    }
    if (p[index]!.startsWith(value)) out.add(p[index]!);
  }
  return [...out].sort();
}

/**
 * Registers the channel resources on a server (before it connects).
 *
 * @param server The server.
 * @param manager The channel manager.
 * @returns A function that stops the notifications (call it when the server closes).
 */
export function registerChannelResources(
  server: McpServer,
  manager: ChannelManagerLike,
): () => void {
  registerChannels(server, manager);
  if (hasContext(manager)) registerContexts(server, manager);
  return notifyUpdates(server, manager);
}

/** `skytale://channel/…`: a channel's recent messages, consuming nothing. */
function registerChannels(server: McpServer, manager: ChannelManagerLike): void {
  const template = new ResourceTemplate(`${CHANNEL_URI_PREFIX}{org}/{ns}/{svc}`, {
    list: async () => ({
      resources: (await activeChannels(manager)).map((c) => ({
        uri: channelUri(c.channel),
        name: c.channel,
        title: `Channel ${c.channel}`,
        description: `End-to-end encrypted channel "${c.channel}" (epoch ${c.epoch}; members: ${
          c.members.join(", ")
        }). Reading it shows its recent messages without consuming them.`,
        mimeType: "application/json",
        _meta: { members: c.members, epoch: c.epoch },
      })),
    }),
    complete: {
      org: (v, ctx) => suggest(manager, 0, v, ctx?.arguments),
      ns: (v, ctx) => suggest(manager, 1, v, ctx?.arguments),
      svc: (v, ctx) => suggest(manager, 2, v, ctx?.arguments),
    },
  });
  server.registerResource("channel", template, {
    title: "A Skytale channel",
    description:
      "An end-to-end encrypted channel of this agent, by name: skytale://channel/{org}/{namespace}/{service}. " +
      "Reading returns its recent messages (sender, sender_id, seq, time, text) without consuming them.",
    mimeType: "application/json",
  }, async (uri, vars) => {
    const channel = channelOf(vars);
    const messages = await manager.history(channel, { max: READ_MAX });
    const members = await manager.members(channel);
    return jsonContents(uri, { channel, members, messages: messages.map(messageJson) });
  });
}

/** `skytale://context/…`: each channel's shared context, its current entries. */
function registerContexts(
  server: McpServer,
  manager: ChannelManagerLike & ContextManagerLike,
): void {
  const contexts = new ResourceTemplate(`${CONTEXT_URI_PREFIX}{org}/{ns}/{svc}`, {
    list: async () => ({
      resources: (await activeChannels(manager)).map((c) => ({
        uri: CONTEXT_URI_PREFIX + c.channel,
        name: `${c.channel} context`,
        title: `Shared context of ${c.channel}`,
        description:
          `The shared context of "${c.channel}": notes, artifacts, tasks, handoffs and decisions its members keep. ` +
          "Subscribe to hear of every change, including tasks handed to this agent.",
        mimeType: "application/json",
      })),
    }),
  });
  server.registerResource("context", contexts, {
    title: "A channel's shared context",
    description:
      "The shared context of a channel of this agent: skytale://context/{org}/{namespace}/{service}. " +
      "Reading returns its current entries (key, type, value, author, updated).",
    mimeType: "application/json",
  }, async (uri, vars) => {
    const channel = channelOf(vars);
    return jsonContents(uri, { channel, entries: await manager.context(channel).list() });
  });
}

/**
 * Subscriptions: one `notifications/resources/updated` per burst of new
 * messages on a subscribed channel, and per change of a subscribed shared
 * context (a handoff to this agent included); `list_changed` on joins,
 * leaves and removals.
 *
 * @returns A function that stops the notifications.
 */
function notifyUpdates(server: McpServer, manager: ChannelManagerLike): () => void {
  const subscribed = new Set<string>();
  const contextWatch = new Map<string, () => void>();
  const updated = (uri: string) => {
    if (!subscribed.has(uri) || !server.isConnected()) return;
    server.server.sendResourceUpdated({ uri }).catch(() => {});
  };
  server.server.registerCapabilities({ resources: { subscribe: true, listChanged: true } });
  server.server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    const uri = req.params.uri;
    subscribed.add(uri);
    await manager.channels(); // the manager connects on its first call: updates flow from now on
    if (uri.startsWith(CONTEXT_URI_PREFIX) && hasContext(manager) && !contextWatch.has(uri)) {
      const channel = uri.slice(CONTEXT_URI_PREFIX.length);
      contextWatch.set(uri, manager.context(channel).subscribe(() => updated(uri)));
    }
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, (req) => {
    subscribed.delete(req.params.uri);
    contextWatch.get(req.params.uri)?.();
    contextWatch.delete(req.params.uri);
    return {};
  });
  const offArrival = manager.on("arrival", (channel) => updated(channelUri(channel)));
  const offMembership = manager.on("membership", (change) => {
    if (!server.isConnected()) return;
    server.sendResourceListChanged();
    // A channel this agent left or was removed from has no resource any more.
    if (change.change !== "joined") subscribed.delete(channelUri(change.channel));
  });
  return () => {
    offArrival();
    offMembership();
    for (const off of contextWatch.values()) off();
    contextWatch.clear();
  };
}
