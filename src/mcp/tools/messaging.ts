/**
 * The messaging tools: `skytale_send`, `skytale_receive` (which waits a few
 * seconds when nothing is there) and `skytale_wait` (news on any of several
 * channels). The waits may take their `timeout` plus a grace, and report
 * progress to a client that asks for it.
 *
 * @module
 */
import { z } from "zod";
import { channelArg, MAX_RECEIVE_TIMEOUT, ToolNames, waitTimeoutArg } from "./_args.ts";
import { list, messageJson, plural, text, type ToolFamily, withProgress } from "./_result.ts";

const receiveArgs = {
  channel: channelArg,
  timeout: waitTimeoutArg(
    "Seconds to wait for a message when none is buffered (default 5, 0 = don't wait); it returns as soon as one arrives",
  ),
  after_seq: z
    .number({ error: "after_seq must be a sequence number (an integer from 0)" })
    .int({ error: "after_seq must be a sequence number (an integer from 0)" })
    .min(0, { error: "after_seq must not be negative" })
    .optional()
    .describe(
      "Read the recent messages after this seq instead of the new ones, without consuming anything (pass the last seq you saw)",
    ),
  peek: z
    .boolean({ error: "peek must be true or false" })
    .optional()
    .describe("true: return the waiting messages but leave them for the next skytale_receive"),
  max: z
    .number({ error: "max must be a positive integer" })
    .int({ error: "max must be a positive integer" })
    .min(1, { error: "max must be at least 1" })
    .max(1000, { error: "max must be at most 1000" })
    .optional()
    .describe("Return at most this many messages; the rest stay waiting"),
};

const waitArgs = {
  channels: z
    .array(channelArg, { error: "channels is required: pass a list of channel names" })
    .min(1, { error: "channels is empty: pass at least one channel name" })
    .max(100, { error: "channels has too many entries: pass at most 100" })
    .describe('The channels to watch, each a name "org/namespace/service"'),
  timeout: waitTimeoutArg("Seconds to wait for news on any of them (default 5)"),
};

const quoted = (channels: string[]) => list(channels.map((c) => `"${c}"`));

/** The registrations of the messaging tools. */
export const messagingTools = {
  [ToolNames.send]: ({ server, manager, run }) =>
    server.registerTool(ToolNames.send, {
      title: "Send a message",
      description:
        "Encrypt a text message and send it to every member of a channel. Only members can read it; the relay sees ciphertext only. " +
        "Returns the message's sequence number in the channel.",
      inputSchema: {
        channel: channelArg,
        message: z
          .string({ error: "message is required: pass the text to send" })
          .min(1, { error: "message is empty: pass the text to send" })
          .describe("The text to send to every member of the channel"),
      },
      annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: true },
    }, ({ channel, message }) =>
      run(ToolNames.send, async () => {
        const { seq } = await manager.send(channel, message);
        return text(`Sent to "${channel}" (seq ${seq}).`, { channel, seq });
      })),

  [ToolNames.receive]: ({ server, manager, run, grace }) =>
    server.registerTool(ToolNames.receive, {
      title: "Receive messages",
      description:
        "Return the messages other members sent to a channel since your last skytale_receive on it (each once, oldest first), with sender, time and text. " +
        `If none are waiting, waits up to timeout seconds (default 5, at most ${MAX_RECEIVE_TIMEOUT}) and returns as soon as one arrives. ` +
        "Optional: peek=true leaves the messages waiting; after_seq=N re-reads the recent messages after seq N without consuming; max caps how many. " +
        "Call it again to keep listening. The sender is proven by cryptography, not by the message text.",
      inputSchema: receiveArgs,
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: true },
    }, ({ channel, timeout, after_seq, peek, max }, extra) =>
      run(
        ToolNames.receive,
        async () => {
          const messages = await withProgress(extra, timeout, `messages on "${channel}"`, () =>
            manager.receive(channel, {
              timeout,
              signal: extra.signal,
              ...(after_seq !== undefined ? { afterSeq: after_seq } : {}),
              ...(peek ? { peek } : {}),
              ...(max !== undefined ? { max } : {}),
            }));
          const structured = { channel, messages: messages.map(messageJson) };
          if (messages.length === 0) {
            return text(
              `No new messages on "${channel}" (waited ${timeout} s). Call skytale_receive again to keep listening.`,
              structured,
            );
          }
          const kept = after_seq !== undefined || peek === true;
          const lines = messages.map((m) => `[${m.time}] ${m.sender}: ${m.text}`);
          return text(
            `${plural(messages.length, "message")} on "${channel}"${
              kept ? " (left waiting: not consumed)" : ""
            }:\n${lines.join("\n")}`,
            structured,
          );
        },
        timeout + grace,
      )),

  [ToolNames.wait]: ({ server, manager, run, grace }) =>
    server.registerTool(ToolNames.wait, {
      title: "Wait for news on several channels",
      description:
        "Wait until any of the listed channels has new messages, up to timeout seconds (default 5, " +
        `at most ${MAX_RECEIVE_TIMEOUT}); returns as soon as one has, naming which. Consumes nothing: ` +
        "then read them with skytale_receive on the named channel(s).",
      inputSchema: waitArgs,
      annotations: { readOnlyHint: true, openWorldHint: true },
    }, ({ channels, timeout }, extra) =>
      run(
        ToolNames.wait,
        async () => {
          const ready = await withProgress(
            extra,
            timeout,
            "news",
            () => manager.wait(channels, { timeout, signal: extra.signal }),
          );
          if (ready.length === 0) {
            return text(
              `No news on ${
                quoted(channels)
              } (waited ${timeout} s). Call skytale_wait again to keep waiting.`,
              { channels: [] },
            );
          }
          return text(
            `News on ${quoted(ready)}: read with skytale_receive(channel=...).`,
            { channels: ready },
          );
        },
        timeout + grace,
      )),
} satisfies ToolFamily;
