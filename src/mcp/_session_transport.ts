/**
 * The transport of one remote client's MCP session on the serving side of
 * `serveChannel`: answers are sealed to the client's session key.
 *
 * @module
 */
import { InterruptedError, ValidationError } from "../errors.ts";
import { Tags } from "../channel/envelope.ts";
import { FrameSealer, MAX_FRAMES_PER_KEY } from "./_frame.ts";
import { bounded, BYE_WAIT_MS, errorOf } from "./_common.ts";
import { bytesEqual } from "../_util.ts";
import {
  BridgeErrorCodes,
  type ChannelSession,
  type JsonRpcMessage,
  type McpTransport,
  type TaggedChannels,
  type TransportSendOptions,
} from "./transport_contract.ts";

/** The transport of one remote client's session on the serving side. */
export class SessionTransport implements McpTransport {
  sessionId: string;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JsonRpcMessage) => void) | undefined;
  readonly session: ChannelSession;
  #mgr: TaggedChannels;
  #me: string;
  /** The client's session key (raw X25519), from its latest frame. */
  #clientKey: Uint8Array | undefined;
  /** Seals answers to it (one key box per client key). */
  #sealer: Promise<FrameSealer> | undefined;
  #sealed = 0;
  #started = false;
  #closing: Promise<void> | undefined;
  #queue: JsonRpcMessage[] = [];
  #sending: Promise<unknown> = Promise.resolve();
  #onEnd: (reason: string) => void;
  /** Set before closing when the client is not to be told (it said bye, or left). */
  silent = false;
  reason = "closed by the server";

  constructor(
    mgr: TaggedChannels,
    me: string,
    session: ChannelSession,
    onEnd: (reason: string) => void,
  ) {
    this.#mgr = mgr;
    this.#me = me;
    this.session = session;
    this.sessionId = session.sessionId;
    this.#onEnd = onEnd;
  }

  start(): Promise<void> {
    if (this.#started) {
      return Promise.reject(
        new ValidationError(
          "invalid_argument",
          `Session "${this.sessionId}" of "${this.session.identity}" is already started`,
        ),
      );
    }
    this.#started = true;
    for (const m of this.#queue.splice(0)) this.deliver(m);
    return Promise.resolve();
  }

  /** Takes the client's session key from its latest frame: answers are sealed to it. */
  setClientKey(ck: Uint8Array): void {
    const known = this.#clientKey;
    if (known && bytesEqual(known, ck)) return;
    this.#clientKey = ck;
    this.#sealer = undefined;
  }

  deliver(m: JsonRpcMessage): void {
    if (this.#closing) return;
    if (!this.#started || !this.onmessage) {
      this.#queue.push(m);
      return;
    }
    try {
      this.onmessage(m);
    } catch (e) {
      this.onerror?.(errorOf(e));
    }
  }

  async send(message: JsonRpcMessage, _options?: TransportSendOptions): Promise<void> {
    if (this.#closing) {
      throw new InterruptedError(
        "closed",
        `Session "${this.sessionId}" of "${this.session.identity}" is closed`,
      );
    }
    try {
      await this.#frame({ msg: message });
    } catch (e) {
      if (
        e instanceof ValidationError && e.code === "too_large" && message.id !== undefined &&
        message.method === undefined
      ) {
        // A response that does not fit a message: answer the request with an error instead.
        await this.#frame({
          msg: {
            jsonrpc: "2.0",
            id: message.id,
            error: { code: BridgeErrorCodes.internalError, message: e.message },
          },
        });
        return;
      }
      throw e;
    }
  }

  #frame(part: { msg?: JsonRpcMessage; bye?: string }): Promise<void> {
    const ch = this.session.channel;
    if (this.#sealer === undefined || this.#sealed === MAX_FRAMES_PER_KEY) {
      const header = { dir: "s", sid: this.session.sessionId, to: this.session.did } as const;
      this.#sealer = FrameSealer.create(header, this.#clientKey!, ch, this.#me);
      this.#sealed = 0;
    }
    this.#sealed++;
    // Sealed as soon as the sealer is ready, in call order (so counters grow), sent in call order.
    const sealed = this.#sealer.then((sealer) => sealer.seal(part));
    sealed.catch(() => {});
    const p = this.#sending.then(async () => this.#mgr.sendTagged(ch, Tags.mcp, await sealed));
    this.#sending = p.catch(() => {});
    return p.then(() => {});
  }

  close(): Promise<void> {
    this.#closing ??= Promise.resolve().then(async () => {
      this.#onEnd(this.reason);
      if (!this.silent) await bounded(this.#frame({ bye: this.reason }), BYE_WAIT_MS);
      this.onclose?.();
    });
    return this.#closing;
  }
}
