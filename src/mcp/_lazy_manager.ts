/**
 * A channel manager that loads on first use, so the MCP server answers
 * `initialize` (and `tools/list`, `prompts/list`) before the SDK's channel
 * manager and everything it imports are loaded: about a third of the stdio
 * server's cold start. Every method is forwarded once the manager is there;
 * the few that answer synchronously (`on`, a context's `subscribe`) return
 * their unsubscribe function at once and attach when it has loaded. `on`
 * alone does not load it (the server subscribes at start); any other call does.
 *
 * @module
 */
import { errorMessage } from "../_util.ts";
import { logLine } from "../runtime/env.ts";

type Method = (...args: unknown[]) => unknown;
type Unsubscribe = () => void;
type Loaded = Record<PropertyKey, unknown> & { close(): Promise<void> };

/** A subscription made before the manager loaded: attached once it has. */
interface Pending {
  attach(m: Loaded): void;
}

function call(target: unknown, prop: PropertyKey, args: unknown[]): unknown {
  const fn = (target as Record<PropertyKey, unknown>)[prop];
  if (typeof fn !== "function") throw new TypeError(`The manager has no method "${String(prop)}"`);
  return (fn as Method).apply(target, args);
}

/**
 * Wraps a manager factory.
 *
 * @param identity The identity the manager will have (what `identity` reads before it loads).
 * @param load Makes the manager; called once, on first use.
 * @returns An object with the manager's methods.
 */
export function lazyManager<M extends { close(): Promise<void> }>(
  identity: string,
  load: () => Promise<M>,
): M {
  let real: Loaded | undefined;
  let loading: Promise<Loaded> | undefined;
  const pending = new Set<Pending>();
  const get = (): Promise<Loaded> =>
    loading ??= load().then((m) => {
      real = m as unknown as Loaded;
      for (const p of pending) p.attach(real);
      pending.clear();
      return real;
    });
  /** Subscribes now if loaded, else when it loads (`start`: and load it now). */
  const subscribe = (sub: (m: Loaded) => Unsubscribe, start: boolean): Unsubscribe => {
    if (real) return sub(real);
    let off: Unsubscribe | undefined;
    let cancelled = false;
    const p: Pending = {
      attach(m) {
        if (!cancelled) off = sub(m);
      },
    };
    pending.add(p);
    if (start) {
      get().catch((e) => logLine(`skytale mcp: the channel manager failed: ${errorMessage(e)}`));
    }
    return () => {
      cancelled = true;
      pending.delete(p);
      off?.();
    };
  };
  const context = (channel: string): unknown => {
    if (real) return call(real, "context", [channel]);
    const of = async () => call(await get(), "context", [channel]);
    return new Proxy({}, {
      get(_t, prop) {
        if (typeof prop === "symbol" || prop === "then") return undefined;
        if (prop === "subscribe") {
          return (...args: unknown[]) =>
            subscribe((m) => call(call(m, "context", [channel]), prop, args) as Unsubscribe, true);
        }
        return async (...args: unknown[]) => call(await of(), prop, args);
      },
    });
  };
  return new Proxy({} as M, {
    get(_t, prop) {
      if (prop === "identity") return real ? real.identity : identity;
      if (prop === "then") return undefined; // not a promise
      if (prop === "close" || prop === Symbol.asyncDispose) {
        return async () => {
          pending.clear();
          if (loading) await (await loading).close();
        };
      }
      if (typeof prop === "symbol") return undefined;
      if (prop === "on") {
        return (...args: unknown[]) => subscribe((m) => call(m, "on", args) as Unsubscribe, false);
      }
      if (prop === "context") return context;
      return async (...args: unknown[]) => call(await get(), prop, args);
    },
  });
}
