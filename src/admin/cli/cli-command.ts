/**
 * The shape of one `kysely-scale-admin` command. Each command lives in its own file and is listed
 * in `cli-commands.ts`; the entry point parses, dispatches and prints, so a command only turns
 * parsed flags into a library call and a result to print.
 */
import type { ParseArgsConfig } from 'node:util';

/** Flags as `node:util` parseArgs returns them. */
export type CliValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** What a command returns: the result object (printed as JSON with `--json`), its text form, and the exit code. */
export interface CliOutcome {
  readonly result: unknown;
  readonly text: string;
  /** 0 done, 1 the operation failed or found a problem. */
  readonly exitCode: 0 | 1;
}

/** Context every command gets. */
export interface CliContext {
  /** The catalog URL from `--catalog` or `KYSELY_SCALE_CATALOG`; undefined when neither was given. */
  readonly catalog: string | undefined;
  readonly json: boolean;
  /** Where progress lines go (stderr), so stdout stays one result. */
  readonly progress: NodeJS.WritableStream & { isTTY?: boolean };
  /**
   * Where the result goes (stdout). A text-mode command whose result is a line per item may write
   * each line here as it is known (redacted) and leave it out of its `text`, so a slow command shows
   * its lines as they come and prints each once; with `--json` it writes nothing here.
   */
  readonly output: NodeJS.WritableStream;
}

/** A usage error: printed with the usage text, exit code 2. */
export class CliUsageError extends Error {}

/** One command of the admin CLI. */
export interface CliCommand {
  /** One line for the command list. */
  readonly summary: string;
  /** Lines describing its own flags, shown in the usage text. */
  readonly usage: readonly string[];
  /** Its flags (beyond the global `--catalog`, `--json`, `--help`). */
  readonly options: NonNullable<ParseArgsConfig['options']>;
  /** Whether it needs `--catalog`. */
  readonly needsCatalog: boolean;
  run(values: CliValues, context: CliContext): Promise<CliOutcome>;
}

/** A flag's string value, or undefined. */
export function stringFlag(values: CliValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A flag's string values (for `multiple: true` flags). */
export function stringsFlag(values: CliValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
}

/** A whole-number flag ≥ `min`, or `fallback` when absent; a usage error otherwise. */
export function integerFlag(values: CliValues, name: string, min: number, fallback: number): number;
export function integerFlag(values: CliValues, name: string, min: number): number | undefined;
export function integerFlag(values: CliValues, name: string, min: number, fallback?: number): number | undefined {
  const text = stringFlag(values, name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min) throw new CliUsageError(`--${name} takes a whole number ≥ ${min}; got ${JSON.stringify(text)}.`);
  return n;
}

/** "1 shard", "2 shards". */
export function plural(count: number, noun: string, nounPlural = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nounPlural}`;
}
