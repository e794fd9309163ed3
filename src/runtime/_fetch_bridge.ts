/**
 * The one bridge from a `node:http` server to a Web fetch handler (`Request`
 * in, `Response` out), for {@linkcode serveFetch} (`http.ts`) and for
 * {@linkcode serve} on Node and Deno (`serve.ts`).
 *
 * It is `@hono/node-server`'s request listener: response bodies are streamed
 * chunk by chunk with backpressure (Server-Sent Events work), a response body
 * is cancelled and the request's `signal` aborted when the client goes away.
 * On top of it, a request body larger than `maxBodyBytes` is answered with 413
 * before the handler sees it (by `Content-Length` when the client declares
 * one, else once the body read so far passes the limit); a body within it is
 * read whole and handed on as bytes.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener, type HttpBindings, RequestError } from "@hono/node-server";

/** The largest request body accepted unless told otherwise: 4 MiB. */
export const DEFAULT_MAX_BODY_BYTES: number = 4 * 1024 * 1024;

/** How {@linkcode fetchListener} answers. */
export interface FetchListenerOptions {
  /** The host a request without a `Host` header is taken to name. */
  hostname: string;
  /** The largest request body accepted, in bytes; larger ones get 413. */
  maxBodyBytes: number;
  /** Called with errors the handler throws (they are answered with 500). */
  onError?: (error: unknown) => void;
}

/** A Web handler that also learns the peer address (empty when unknown). */
export type RemoteFetchHandler = (req: Request, remote: string) => Response | Promise<Response>;

function _text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain" } });
}

/**
 * The request with its body read whole, or a 413 when the body is larger than `max` bytes.
 *
 * @param req The request as the listener made it (its body a stream).
 * @param max The limit.
 * @returns The request to hand on, or the refusal.
 */
async function _bounded(req: Request, max: number): Promise<Request | Response> {
  if (req.body === null) return req;
  const tooLarge = () => _text(413, "Request body too large\n");
  if (Number(req.headers.get("content-length") ?? 0) > max) return tooLarge();
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return new Request(req.url, {
    method: req.method,
    headers: new Headers([...req.headers]),
    body,
    signal: req.signal,
  });
}

/**
 * A `node:http` request listener that answers with `handler`.
 *
 * @param handler Answers each request.
 * @param opts The default host, the body limit and where handler errors go.
 * @returns The listener, for `http.createServer` or `https.createServer`.
 */
export function fetchListener(
  handler: RemoteFetchHandler,
  opts: FetchListenerOptions,
): (incoming: IncomingMessage, outgoing: ServerResponse) => Promise<void> {
  const listener = getRequestListener(
    async (request, env) => {
      const req = await _bounded(request, opts.maxBodyBytes);
      if (req instanceof Response) return req;
      const { incoming } = env as HttpBindings;
      return await handler(req, incoming.socket.remoteAddress ?? "");
    },
    {
      hostname: opts.hostname,
      // Keep the runtime's own Request and Response: other code in the process uses them.
      overrideGlobalObjects: false,
      errorHandler: (e) => {
        // A request line or Host that makes no URL: the client's mistake.
        if (e instanceof RequestError) return _text(400, "Bad request URL\n");
        opts.onError?.(e);
        return _text(500, "Internal server error\n");
      },
    },
  );
  return listener;
}
