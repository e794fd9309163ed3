/**
 * Argument parsing for every `skytale` command: `node:util`'s `parseArgs`,
 * with each mistake reported as a {@linkcode UsageError} that names the flag
 * or argument at fault and ends with the command's usage; and the parsers of
 * the values the commands share (integers in a range, durations like `15m`).
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import { parseArgs } from "../runtime/args.ts";

type Config = NonNullable<Parameters<typeof parseArgs>[0]>;
/** The option descriptors `parseArgs` takes. */
export type OptionSpecs = NonNullable<Config["options"]>;

/** How a command is named and explained in its errors. */
export interface CommandUsage {
  /** The command, as in `skytale relay`. */
  command: string;
  /** Its usage text, appended to every error. */
  usage: string;
}

/** The values and positionals of a strict `parseArgs` run over `O`. */
export type ParsedCommandArgs<O extends OptionSpecs, P extends boolean> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: P }>
>;

/**
 * Parses a command's arguments strictly.
 *
 * @param cmd The command and its usage.
 * @param args The arguments after the command's name.
 * @param options The options it takes.
 * @param allowPositionals Whether it takes arguments that are not options.
 * @returns The values and positionals.
 * @throws {UsageError} Naming an unknown option, an option without its value
 *   (a value starting with "-" must be written `--flag=-value`), a value given
 *   to a flag that takes none, or an unexpected argument.
 */
export function parseCommandArgs<const O extends OptionSpecs, const P extends boolean = false>(
  cmd: CommandUsage,
  args: string[],
  options: O,
  allowPositionals?: P,
): ParsedCommandArgs<O, P> {
  const fail = (what: string) => new UsageError(`${what}\n${cmd.usage}`);
  const { tokens } = parseArgs({
    args,
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind === "positional" && !allowPositionals) {
      throw fail(`Unexpected argument "${t.value}" for "${cmd.command}"`);
    }
    if (t.kind !== "option") continue;
    const spec = Object.hasOwn(options, t.name) ? options[t.name] : undefined;
    if (spec === undefined) throw fail(`Unknown option "${t.rawName}" for "${cmd.command}"`);
    if (
      spec.type === "string" &&
      (t.value === undefined || (!t.inlineValue && t.value.startsWith("-")))
    ) {
      throw fail(`Option "${t.rawName}" needs a value`);
    }
    if (spec.type === "boolean" && t.inlineValue) {
      throw fail(`Option "${t.rawName}" takes no value`);
    }
  }
  try {
    return parseArgs({
      args,
      options,
      strict: true,
      allowPositionals: allowPositionals ?? false,
    }) as ParsedCommandArgs<O, P>;
  } catch (e) {
    // Whatever the checks above let through: node's own message names the flag.
    throw new UsageError(`${(e as Error).message}\n${cmd.usage}`, { cause: e });
  }
}

/**
 * An integer option's value, checked against its range.
 *
 * @param cmd The command and its usage.
 * @param flag The option, e.g. `--port`.
 * @param v Its value as given, or undefined when not given.
 * @param min The least allowed.
 * @param max The most allowed.
 * @returns The number, or undefined when not given.
 * @throws {UsageError} When it is not a whole number from `min` to `max`.
 */
export function intOption(
  cmd: CommandUsage,
  flag: string,
  v: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw new UsageError(
      `Option ${flag} must be an integer from ${min} to ${max}, got "${v}"\n${cmd.usage}`,
    );
  }
  return n;
}

const UNITS: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * A duration option's value: seconds, or a number with `s`, `m`, `h` or `d`.
 *
 * @param cmd The command and its usage.
 * @param flag The option, e.g. `--retention-age`.
 * @param v Its value as given, or undefined when not given.
 * @param maxSeconds The longest allowed.
 * @returns The seconds, or undefined when not given.
 * @throws {UsageError} When it is not such a duration from 1 s to `maxSeconds`.
 */
export function durationOption(
  cmd: CommandUsage,
  flag: string,
  v: string | undefined,
  maxSeconds: number,
): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)([smhd]?)$/.exec(v);
  const n = m ? Number(m[1]) * UNITS[m[2]!]! : 0;
  if (!m || n < 1 || n > maxSeconds) {
    throw new UsageError(
      `Option ${flag} must be a duration like 30, 90s, 15m, 12h or 7d, got "${v}"\n${cmd.usage}`,
    );
  }
  return n;
}
