/**
 * Command-line parsing, re-exported from `node:util` so that only
 * `src/runtime/` imports `node:*`.
 *
 * @module
 */
export { parseArgs } from "node:util";
