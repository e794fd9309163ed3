/**
 * The relay's front door: the Origin and Host checks every HTTP request and
 * WebSocket upgrade passes before anything else looks at it.
 *
 * - **Origin.** Browsers send `Origin` on every cross-origin request and on
 *   every WebSocket upgrade; other clients (the SDK, curl, Prometheus) do not.
 *   A request with an `Origin` is refused unless that origin was allowed, so no
 *   web page can talk to the relay unless the operator chose it.
 * - **Host.** DNS rebinding points a name the attacker owns at 127.0.0.1; the
 *   browser then sends that name as `Host`, and may leave out `Origin` on a
 *   same-origin GET. A relay listening on a loopback address therefore
 *   accepts only loopback names (`127.0.0.1`, `localhost`, `[::1]`, any of
 *   127/8) with its own port, plus the names allowed. A relay listening on
 *   any other address (a deployment reachable by name anyway) accepts any
 *   `Host` unless names are allowed; then only those and loopback names.
 *
 * A request without a `Host` header (HTTP/1.0) is not a browser's and passes
 * the Host check.
 *
 * @module
 */

/** Options of {@linkcode requestGate}. */
export interface GateOptions {
  /** The address the relay listens on (`--host`). */
  hostname: string;
  /** The port it listens on, once known (port 0 picks one). */
  port: () => number | undefined;
  /** Whether it serves TLS (the default port of a `Host` without one is then 443). */
  tls: boolean;
  /** Origins (`scheme://host[:port]`) whose pages may use the relay. */
  allowOrigins?: readonly string[];
  /** Extra `Host` names (`name` for any port, or `name:port`), e.g. behind a reverse proxy. */
  allowHosts?: readonly string[];
  /** Called with the reason for each refusal. */
  onRefuse?: (reason: string, fields: Record<string, string>) => void;
}

/**
 * Whether `hostname` (a listen address or a Host name without port or
 * brackets) is a loopback one.
 */
export function isLoopbackName(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Normalises an origin given on the command line: `scheme://host[:port]`,
 * lowercase, no path. Returns `undefined` if it is not one.
 *
 * @param value What was given.
 * @returns The origin as browsers send it, or `undefined`.
 */
export function normalizeOrigin(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return undefined;
  }
  if (u.origin === "null" || value.replace(/\/$/, "").toLowerCase() !== u.origin) return undefined;
  return u.origin;
}

/**
 * Normalises a Host name given on the command line: `name` or `name:port`,
 * lowercase. Returns `undefined` if it is not one.
 *
 * @param value What was given.
 * @returns The host as compared, or `undefined`.
 */
export function normalizeHost(value: string): string | undefined {
  const v = value.toLowerCase();
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/.test(v)) return undefined;
  return v;
}

/** Splits a Host header into name and port (`undefined` when absent); `undefined` if malformed. */
function _splitHost(host: string): { name: string; port: number | undefined } | undefined {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?$/.exec(host.toLowerCase());
  if (!m) return undefined;
  return { name: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) };
}

/**
 * Builds the check: `undefined` lets a request through, a `403` response
 * refuses it.
 *
 * @param opts Where the relay listens and what is allowed.
 * @returns The check, for requests and upgrades alike.
 */
export function requestGate(opts: GateOptions): (req: Request) => Response | undefined {
  const origins = new Set(opts.allowOrigins ?? []);
  const hosts = new Set((opts.allowHosts ?? []).map((h) => h.toLowerCase()));
  const loopback = isLoopbackName(opts.hostname);
  const refuse = (reason: string, fields: Record<string, string>): Response => {
    opts.onRefuse?.(reason, fields);
    return new Response(`forbidden: ${reason}\n`, {
      status: 403,
      statusText: "Forbidden",
      headers: { "content-type": "text/plain" },
    });
  };
  const hostAllowed = (header: string): boolean => {
    const h = _splitHost(header);
    if (!h) return false;
    if (hosts.has(h.name) || hosts.has(header.toLowerCase())) return true;
    if (isLoopbackName(h.name)) {
      // Any loopback name, but with this relay's port: not another local service's.
      const own = opts.port();
      const port = h.port ?? (opts.tls ? 443 : 80);
      return own === undefined || port === own;
    }
    return !loopback && hosts.size === 0;
  };
  return (req) => {
    const origin = req.headers.get("origin");
    if (origin !== null && !origins.has(origin.toLowerCase())) {
      return refuse(`origin "${origin}" is not allowed (skytale relay --allow-origin)`, {
        origin,
      });
    }
    const host = req.headers.get("host");
    if (host !== null && !hostAllowed(host)) {
      return refuse(`host "${host}" is not allowed (skytale relay --allow-host)`, { host });
    }
    return undefined;
  };
}
