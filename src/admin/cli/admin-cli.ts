#!/usr/bin/env node
/**
 * `kysely-scale-admin`: operator commands. A thin shell: it parses, calls the command (a library
 * function), prints its result (every URL redacted) and sets the exit code: 0 done, 1 the
 * operation failed (the error's code is printed), 2 bad usage.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { redactText } from '../../kernel/redact';
import { CATALOG_DEADLINE_DEFAULTS, CATALOG_DEADLINE_ENVIRONMENT } from '../catalog-connections';
import { CliUsageError, integerFlag, type CliCommand, type CliValues } from './cli-command';
import { CLI_COMMANDS } from './cli-commands';

const GLOBAL_OPTIONS = {
  catalog: { type: 'string' },
  'catalog-timeout-ms': { type: 'string' },
  'catalog-connect-timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

const WIDTH = Math.max(...Object.keys(CLI_COMMANDS).map((n) => n.length)) + 2;

/** One command's lines of the usage text: its summary, then its flags. */
function commandLines(name: string, command: CliCommand): string[] {
  return [`  ${name.padEnd(WIDTH)} ${command.summary}`, ...command.usage.map((line) => `  ${''.padEnd(WIDTH)}   ${line}`)];
}

/** The usage text: every command with its flags, or only `commandName`'s (`add --help`). */
export function adminUsage(commandName?: string): string {
  const one = commandName !== undefined && Object.hasOwn(CLI_COMMANDS, commandName) ? commandName : undefined;
  const commands = one === undefined ? Object.entries(CLI_COMMANDS).flatMap(([name, c]) => commandLines(name, c)) : commandLines(one, CLI_COMMANDS[one]!);
  return [
    `Usage: kysely-scale-admin ${one ?? '<command>'} [options]`,
    '',
    one === undefined ? 'Commands:' : 'Command:',
    ...commands,
    '',
    'Options:',
    '  --catalog <url>                    catalog database (or KYSELY_SCALE_CATALOG)',
    `  --catalog-timeout-ms <n>           a catalog statement without an answer this long (+ 500 ms) fails the command (default ${CATALOG_DEADLINE_DEFAULTS.statementTimeoutMillis}, or ${CATALOG_DEADLINE_ENVIRONMENT.statementTimeoutMillis})`,
    `  --catalog-connect-timeout-ms <n>   the same for connecting to the catalog (default ${CATALOG_DEADLINE_DEFAULTS.connectionTimeoutMillis}, or ${CATALOG_DEADLINE_ENVIRONMENT.connectionTimeoutMillis})`,
    '  --json                             print the result as JSON',
    '  -h, --help                         this text',
    '  --version                          the version of kysely-scale',
  ].join('\n');
}

function packageVersion(): string {
  // dist/admin/cli or src/admin/cli: the package root is three folders up.
  const pkg = JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: readonly string[]): Promise<number> {
  const commandName = argv.find((a) => !a.startsWith('-'));
  const command: CliCommand | undefined = commandName === undefined ? undefined : CLI_COMMANDS[commandName];
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: { ...GLOBAL_OPTIONS, ...(command?.options ?? {}) } });
  } catch (error) {
    return usage((error as Error).message, commandName);
  }
  const { values, positionals } = parsed;
  if (values.version === true) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (values.help === true) {
    process.stdout.write(`${adminUsage(commandName)}\n`);
    return 0;
  }
  if (commandName === undefined) return usage('Give a command.');
  if (command === undefined || !Object.hasOwn(CLI_COMMANDS, commandName)) return usage(`Unknown command "${commandName}".`);
  if (positionals.length > 1) return usage(`Unexpected argument "${positionals[1]}".`, commandName);
  const catalog = (values.catalog as string | undefined) ?? process.env.KYSELY_SCALE_CATALOG;
  if (command.needsCatalog) {
    if (catalog === undefined || catalog === '') return usage('--catalog <url> (or KYSELY_SCALE_CATALOG) is required.', commandName);
    if (!/^postgres(ql)?:\/\//.test(catalog)) return usage('--catalog takes a postgres:// URL.', commandName);
  }
  const json = values.json === true;
  try {
    catalogDeadlineFlags(values);
  } catch (error) {
    return usage((error as Error).message, commandName);
  }
  try {
    const outcome = await command.run(values, { catalog, json, progress: process.stderr, output: process.stdout });
    process.stdout.write(`${redactText(json ? JSON.stringify(outcome.result, null, 2) : outcome.text)}\n`);
    return outcome.exitCode;
  } catch (error) {
    if (error instanceof CliUsageError) return usage(error.message, commandName);
    return failure(error, json);
  }
}

/**
 * `--catalog-timeout-ms` and `--catalog-connect-timeout-ms`: every catalog connection the command
 * makes (the move store's too) takes its deadlines from their environment variables when not
 * given in code, so the flags set those.
 */
function catalogDeadlineFlags(values: CliValues): void {
  const statement = integerFlag(values, 'catalog-timeout-ms', 1);
  const connect = integerFlag(values, 'catalog-connect-timeout-ms', 1);
  if (statement !== undefined) process.env[CATALOG_DEADLINE_ENVIRONMENT.statementTimeoutMillis] = String(statement);
  if (connect !== undefined) process.env[CATALOG_DEADLINE_ENVIRONMENT.connectionTimeoutMillis] = String(connect);
}

/** A command that failed: its code and message on stderr and, with --json, as JSON on stdout (the move commands' results give failures that way too). */
function failure(error: unknown, json: boolean): number {
  const code = typeof (error as { code?: unknown } | null)?.code === 'string' ? (error as { code: string }).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (json) process.stdout.write(`${redactText(JSON.stringify({ ok: false, error: { code: code ?? 'E_FAILED', message } }, null, 2))}\n`);
  process.stderr.write(`${code === undefined ? '' : `${code}: `}${redactText(message)}\n`);
  return 1;
}

/** A usage error: the problem, then the full usage only when no command was recognised (a command's mistake names its help instead of burying the reason). */
function usage(problem: string, commandName?: string): number {
  // A problem may quote an argument, and an argument may be a URL with a password.
  const known = commandName !== undefined && Object.hasOwn(CLI_COMMANDS, commandName);
  process.stderr.write(`${redactText(problem)}\n${known ? `Run \`kysely-scale-admin ${commandName} --help\` for its options.` : `\n${adminUsage()}`}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => process.exit(failure(error, false)),
);
