/**
 * Serving a Web-standard fetch handler (`Request` in, `Response` out) over
 * HTTP/1.1 with `node:http`, which Deno, Node and Bun all provide, through the
 * bridge in `_fetch_bridge.ts`: response bodies are streamed chunk by chunk
 * (Server-Sent Events work), a body is cancelled when its client goes away,
 * and request bodies over the limit get 413.
 *
 * @module
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { DEFAULT_MAX_BODY_BYTES, fetchListener } from "./_fetch_bridge.ts";

/** A function that answers one HTTP request. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Where and how to listen. */
export interface ServeFetchOptions {
  /** The interface to bind, e.g. `127.0.0.1`. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** The largest request body accepted, in bytes (default 4 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Called with errors the handler throws (they are answered with 500). */
  onError?: (error: unknown) => void;
}

/** A running HTTP server. */
export interface FetchServer {
  /** The bound interface. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** Stops listening and drops open connections (streams included). */
  close(): Promise<void>;
}

/**
 * Serves `handler` over HTTP.
 *
 * @param handler Answers each request.
 * @param options Where to listen.
 * @returns The running server, once it listens.
 */
export async function serveFetch(
  handler: FetchHandler,
  options: ServeFetchOptions,
): Promise<FetchServer> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const listener = fetchListener((req) => handler(req), {
    hostname: _authority(options.hostname, port),
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    ...(options.onError ? { onError: options.onError } : {}),
  });
  server.on("request", (req, res) => void listener(req, res));
  let closing: Promise<void> | undefined;
  return {
    hostname: options.hostname,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        const s = server as { closeAllConnections?: () => void };
        s.closeAllConnections?.();
      });
      return closing;
    },
  };
}

/** `host:port` as a `Host` header names it (IPv6 in brackets). */
function _authority(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}
