/**
 * The session table of the MCP HTTP server (`http.ts`): one MCP server and
 * Streamable HTTP transport per session, at most `max` open at once (sessions
 * being initialised count), and a session idle for longer than `idleMs`
 * closed, when next used or by {@linkcode SessionTable.sweep}.
 *
 * @module
 */
import { logLine } from "../runtime/env.ts";
import { WebStandardStreamableHTTPServerTransport } from "./_sdk.ts";
import type { McpServer } from "./_sdk.ts";

interface Session {
  transport: WebStandardStreamableHTTPServerTransport;
  server: McpServer;
  lastSeen: number;
}

/** The open sessions, by id. */
export class SessionTable {
  /** The most sessions open at once. */
  readonly max: number;
  /** How long a session may go without a request, in ms. */
  readonly idleMs: number;
  #sessions = new Map<string, Session>();
  /** Initialize requests between the cap check and their session id. */
  #opening = 0;

  /**
   * Creates an empty table.
   *
   * @param max The most sessions open at once.
   * @param idleMs How long a session may go without a request, in ms.
   */
  constructor(max: number, idleMs: number) {
    this.max = max;
    this.idleMs = idleMs;
  }

  /** The number of open sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Whether opening one more session would pass the cap. */
  get full(): boolean {
    return this.#sessions.size + this.#opening >= this.max;
  }

  /**
   * The session of `id`, marked as used now.
   *
   * @param id The `Mcp-Session-Id`.
   * @returns Its transport, or undefined when unknown or idle too long (then closed).
   */
  async use(id: string): Promise<WebStandardStreamableHTTPServerTransport | undefined> {
    const s = this.#sessions.get(id);
    if (s && Date.now() - s.lastSeen > this.idleMs) {
      await this.close(id);
      return undefined;
    }
    if (s) s.lastSeen = Date.now();
    return s?.transport;
  }

  /**
   * Opens a session for an initialize request and answers it.
   *
   * @param server A new MCP server for the session.
   * @param request The initialize request.
   * @param body Its parsed body.
   * @returns The answer.
   */
  async open(server: () => McpServer, request: Request, body: unknown): Promise<Response> {
    this.#opening++;
    try {
      const s = server();
      const transport: WebStandardStreamableHTTPServerTransport =
        new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: () => crypto.randomUUID(),
          onsessioninitialized: (sid) => {
            this.#sessions.set(sid, { transport, server: s, lastSeen: Date.now() });
          },
          onsessionclosed: (sid) => this.close(sid),
        });
      transport.onclose = () => {
        if (transport.sessionId !== undefined) void this.close(transport.sessionId);
      };
      await s.connect(transport);
      return await transport.handleRequest(request, { parsedBody: body });
    } finally {
      this.#opening--;
    }
  }

  /**
   * Closes a session (its server and transport); nothing if it is not open.
   *
   * @param id The session id.
   */
  async close(id: string): Promise<void> {
    const s = this.#sessions.get(id);
    if (!s) return;
    this.#sessions.delete(id);
    await s.server.close().catch(() => {});
  }

  /** Closes the sessions idle for longer than `idleMs`. */
  sweep(): void {
    const cutoff = Date.now() - this.idleMs;
    for (const [id, s] of this.#sessions) {
      if (s.lastSeen < cutoff) {
        logLine(`skytale mcp: session ${id} idle for ${Math.round(this.idleMs / 1000)} s; closed`);
        void this.close(id);
      }
    }
  }

  /** Closes every session. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#sessions.keys()].map((id) => this.close(id)));
  }
}
