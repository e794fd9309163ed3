/**
 * Output of the CLI commands that print a result.
 *
 * @module
 */
import { processStdio } from "../runtime/stdio.ts";

/**
 * Writes a line to stdout and resolves once it is flushed.
 *
 * @param text The text (a newline is added when it has none).
 * @returns When written.
 */
export function writeOut(text: string): Promise<void> {
  const { stdout } = processStdio();
  return new Promise((resolve) =>
    stdout.write(text.endsWith("\n") ? text : text + "\n", () => resolve())
  );
}
