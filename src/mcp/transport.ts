/**
 * MCP over end-to-end encrypted channels. {@linkcode SkytaleTransport} is an
 * MCP SDK `Transport` for a client; {@linkcode serveChannel} answers many
 * remote clients on one channel, one MCP session per remote member. This
 * module gathers them; the client end lives in `client_transport.ts`, the
 * serving end in `serve_channel.ts`, the frames in `_frame.ts`.
 *
 * ## Who talks to whom
 * A client talks to exactly one server: the member whose did it was given
 * (`serverDid`; `skytale expose` prints it). Every frame is checked against the
 * sender's did as MLS proves it (the `senderId` of the message), never against
 * a field of the frame: a frame from any other member is ignored and logged,
 * so a member that answers first cannot take a session over.
 *
 * ## Wire format (frame version 3)
 * Each JSON-RPC message travels as one MLS application message tagged `mcp`
 * (chat messages use tag `chat`; neither layer sees the other's traffic). Its
 * body is a clear header, a key box, a counter and the encrypted body:
 *
 * ```text
 * u8 version = 3 | u8 dir ("c" | "s") | u8 n | sid (n bytes, UTF-8)
 *   | u8 m | to (m bytes, the recipient's did)
 *   | key box (64 bytes: enc 32 | sealed session key 16 | tag 16)
 *   | u64 counter (big-endian, below 2^32) | ciphertext (AES-128-GCM, tag 16)
 * ```
 *
 * `dir` is `c` from a client to a server and `s` back. `sid` is the client
 * transport's random session id; `to` is the recipient's did.
 *
 * - The key box is an HPKE box (RFC 9180 base mode, DHKEM(X25519,
 *   HKDF-SHA256), HKDF-SHA256, AES-128-GCM; `info` `skytale mcp frame v3 key`)
 *   holding the sender's random 16-byte session key for this session and
 *   recipient. Its AAD is the header bytes, `\n`, the channel, `\n` and the
 *   sender's did. A sender seals it once and carries the same box in every
 *   frame, so a recipient can start from any frame (e.g. after a restart) and
 *   opens each box once.
 * - The body is AES-128-GCM under that key with the nonce `0^32 ‖ counter`
 *   (96 bits) and the AAD: every frame byte before the ciphertext, `\n`, the
 *   channel, `\n`, the sender's did. A box or body cannot be moved to another
 *   session, channel, recipient or sender. Counters start at 0 per key and
 *   grow by one per frame; a receiver refuses a counter not above the last it
 *   accepted under that key (a replay). Keys live only in memory, never
 *   stored: a restarted or new transport makes new ones, so no nonce repeats
 *   under a key. After 2^32 frames a sender makes a new key.
 * - The body holds UTF-8 JSON `{ "ck"?: hex, "msg"?: JSON-RPC, "bye"?: string }`.
 *   A client seals its key box to the X25519 form of the server's Ed25519 did
 *   key and puts its session public key `ck` (a fresh X25519 key per
 *   transport, never stored) in every frame; the server opens the client's key
 *   box with its identity key (the manager's `openSealed`) and seals its own
 *   key box to the latest `ck` of that session.
 *
 * `bye` ends the session (with a reason). A session is keyed by (the
 * sender's did, `sid`). Other members of the channel, and the relay, see the
 * header (who talks to whom, the session id), sizes and timing, never a
 * request or a result. Frames of versions 1 (unsealed JSON) and 2 (one HPKE
 * box per frame) are refused with a line on stderr.
 *
 * @module
 */
export {
  BridgeErrorCodes,
  type ChannelSession,
  type JsonRpcMessage,
  type McpTransport,
  type TaggedChannels,
  type TaggedMessage,
  type TransportSendOptions,
} from "./transport_contract.ts";
export { SkytaleTransport, type SkytaleTransportOptions } from "./client_transport.ts";
export {
  type ChannelServing,
  type McpServerLike,
  serveChannel,
  type ServeChannelOptions,
} from "./serve_channel.ts";
