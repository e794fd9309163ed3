/**
 * Serving a Web-standard fetch handler (`Request` in, `Response` out) over
 * HTTP/1.1 with `node:http`, which Deno, Node and Bun all provide. Response
 * bodies are streamed chunk by chunk (Server-Sent Events work), and a body is
 * cancelled when its client goes away.
 *
 * @module
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Buffer } from "node:buffer";

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
  const maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024;
  let port = options.port;
  const base = () =>
    `http://${options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname}:${port}`;

  async function answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const method = req.method ?? "GET";
    let body: Uint8Array | undefined;
    if (method !== "GET" && method !== "HEAD") {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBody) {
          res.writeHead(413, { "content-type": "text/plain" }).end("Request body too large\n");
          req.destroy();
          return;
        }
        chunks.push(chunk);
      }
      body = Buffer.concat(chunks);
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    let url: URL;
    try {
      url = new URL(req.url ?? "/", base());
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("Bad request URL\n");
      return;
    }
    const init: RequestInit = { method, headers, signal: abort.signal };
    if (body !== undefined) init.body = body as Uint8Array<ArrayBuffer>;
    const response = await handler(new Request(url, init));
    const out: Record<string, string | string[]> = {};
    response.headers.forEach((value, name) => {
      out[name] = name === "set-cookie" ? response.headers.getSetCookie() : value;
    });
    res.writeHead(response.status, out);
    res.flushHeaders();
    if (response.body === null || method === "HEAD") {
      res.end();
      return;
    }
    const reader = response.body.getReader();
    abort.signal.addEventListener("abort", () => void reader.cancel().catch(() => {}));
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || res.destroyed) break;
        if (!res.write(value)) {
          await new Promise<void>((resolve) => {
            res.once("drain", resolve);
            res.once("close", resolve);
          });
        }
      }
    } catch {
      // the client went away or the body failed: nothing more to send
    }
    res.end();
  }

  const server = http.createServer((req, res) => {
    answer(req, res).catch((e) => {
      options.onError?.(e);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "text/plain" }).end("Internal server error\n");
      } else {
        res.destroy();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
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
