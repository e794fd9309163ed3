// Drives tests/fixtures/agent.ts: one SkytaleChannelManager in its own process.
import { createInterface } from "node:readline";
import { type Proc, signalPid, spawnScript } from "./_helpers.ts";

/** An error answered by an agent process. */
export class AgentError extends Error {
  code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** A member running in a separate process. */
export class Agent {
  proc: Proc;
  identity: string;
  #next = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(identity: string, env: Record<string, string>) {
    this.identity = identity;
    this.proc = spawnScript("tests/fixtures/agent.ts", [], { ...env, SKYTALE_IDENTITY: identity });
    // Writing to an agent that was just SIGKILLed fails with EPIPE: its call is
    // rejected by the exit handler below, so the stream error itself is ignored.
    this.proc.child.stdin!.on("error", () => {});
    const rl = createInterface({ input: this.proc.child.stdout! });
    rl.on("line", (line) => {
      const msg = JSON.parse(line) as {
        id: number;
        ok: boolean;
        result?: unknown;
        code?: string;
        message?: string;
      };
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new AgentError(msg.code!, msg.message!));
    });
    this.proc.exited.then(() => {
      for (const p of this.#pending.values()) {
        p.reject(new Error(`agent ${identity} exited; stderr:\n${this.proc.stderr()}`));
      }
      this.#pending.clear();
    });
  }

  static async start(identity: string, env: Record<string, string>): Promise<Agent> {
    const a = new Agent(identity, env);
    await a.proc.waitFor(/agent \S+ ready/);
    return a;
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.#next++;
    const child = this.proc.child;
    if (child.exitCode !== null || child.signalCode !== null) {
      return Promise.reject(new Error(`agent ${this.identity} has exited; ${op} not sent`));
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new Error(`agent ${this.identity}: ${op} timed out; stderr:\n${this.proc.stderr()}`),
        );
      }, 60_000);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.child.stdin!.write(JSON.stringify({ id, op, args }) + "\n");
    });
  }

  /** Receives until `n` messages arrived (bounded). */
  async receiveN(
    channel: string,
    n: number,
    ms = 30_000,
  ): Promise<{ sender: string; seq: number; text: string; time: string }[]> {
    const out: { sender: string; seq: number; text: string; time: string }[] = [];
    const end = Date.now() + ms;
    while (out.length < n && Date.now() < end) {
      out.push(...await this.call<typeof out>("receive", channel, 1));
    }
    return out;
  }

  /** Closes stdin (clean shutdown) and waits for exit. */
  async stop(): Promise<void> {
    this.proc.child.stdin!.end();
    const t = setTimeout(() => signalPid(this.proc.child, "SIGKILL"), 10_000);
    await this.proc.exited;
    clearTimeout(t);
  }

  async kill(): Promise<void> {
    await this.proc.kill("SIGKILL");
  }
}
