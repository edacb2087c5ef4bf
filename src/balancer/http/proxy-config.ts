/**
 * The proxy's configuration: its shape, and a JSON file and/or command-line flags read into one
 * checked config. Kept apart from the CLI so it can be tested and embedded.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../kernel/errors';
import { isStrategyName, STRATEGY_FACTORIES } from '../strategies/strategy-registry';
import { checkProxyConfig, inConfigFile } from './proxy-config-check';
import type { ProxyConfig, ProxyHealthConfig } from './proxy-config-types';

export type { ProxyConfig, ProxyHealthConfig } from './proxy-config-types';
import { parseUpstream } from './proxy-config-upstream';


/** @internal Usage text of the CLI. */
export const PROXY_USAGE = `Usage: kysely-scale-proxy [--config file.json] [options]

  --config <file>            JSON config (flags below override it)
  --listen <host:port>       address to listen on (default 127.0.0.1:8080)
  --admin <host:port>        admin endpoint on a loopback address (off by default)
  --upstream <url>           an upstream, repeatable (id=url or url; weight with url#3)
  --strategy <name>          ${Object.keys(STRATEGY_FACTORIES).join(' | ')} (default peak-ewma)
  --health-path <path>       health check path (default /health)
  --health-interval-ms <n>   time between checks (default 2000)
  --health-timeout-ms <n>    check timeout (default 1000)
  --rise <n>                 passes to come back (default 2)
  --fall <n>                 failures to go down (default 3)
  --no-health                no active health checks
  --max-attempts <n>         attempts of idempotent requests (default 3)
  -h, --help                 this text
  --version                  the version of kysely-scale

Statistics: GET /__balancer/stats (JSON), GET /__balancer/metrics (Prometheus).
Upstreams at run time: edit the config file and send SIGHUP, or use the admin endpoint
(GET/POST /upstreams, DELETE /upstreams/<id>, POST /reload).`;

function integerFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new ConfigError(name, `must be an integer, got \`${value}\``);
  return n;
}

/**
 * Where JSON text goes wrong: the shortest prefix whose parse fails for another reason than ending
 * early (Node's messages do not all give a position). Config files are small.
 */
function syntaxErrorOffset(text: string): number {
  const failsInside = (end: number): boolean => {
    try {
      JSON.parse(text.slice(0, end));
      return false;
    } catch (error) {
      return !/end of (JSON )?input|Unterminated/i.test((error as Error).message);
    }
  };
  let lo = 1;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (failsInside(mid)) hi = mid;
    else lo = mid + 1;
  }
  return Math.max(0, lo - 1);
}

/** Reads and parses a config file; syntax and read errors name the file (and the line of a syntax error). */
async function readConfigFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { file });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    const message = (error as Error).message;
    const offset = syntaxErrorOffset(text);
    const before = text.slice(0, offset);
    const where = ` at line ${before.split('\n').length}, column ${offset - before.lastIndexOf('\n')}`;
    throw new ConfigError('--config', `${file} is not valid JSON${where}: ${message}`, { file });
  }
}

/**
 * Reads `--config` (if given) and applies the flags over it; `'help'` for `-h`/`--help` and
 * `'version'` for `--version` (the CLI prints those and exits 0). Every field is checked before
 * anything starts; an error names the field, and the file when the field came from it.
 */
export async function loadProxyConfig(argv: readonly string[]): Promise<ProxyConfig | 'help' | 'version'> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      config: { type: 'string' },
      listen: { type: 'string' },
      admin: { type: 'string' },
      upstream: { type: 'string', multiple: true },
      strategy: { type: 'string' },
      'health-path': { type: 'string' },
      'health-interval-ms': { type: 'string' },
      'health-timeout-ms': { type: 'string' },
      rise: { type: 'string' },
      fall: { type: 'string' },
      'no-health': { type: 'boolean' },
      'max-attempts': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.version === true) return 'version';
  if (values.help === true) return 'help';
  return loadMerged(values, values.config === undefined ? {} : await readCheckedFile(values.config));
}

/** The config file, checked field by field (errors name the file). */
async function readCheckedFile(file: string): Promise<Partial<ProxyConfig>> {
  const raw = await readConfigFile(file);
  return inConfigFile(file, () => checkProxyConfig(raw, true));
}

type Flags = {
  readonly listen?: string | undefined;
  readonly admin?: string | undefined;
  readonly upstream?: string[] | undefined;
  readonly strategy?: string | undefined;
  readonly 'health-path'?: string | undefined;
  readonly 'health-interval-ms'?: string | undefined;
  readonly 'health-timeout-ms'?: string | undefined;
  readonly rise?: string | undefined;
  readonly fall?: string | undefined;
  readonly 'no-health'?: boolean | undefined;
  readonly 'max-attempts'?: string | undefined;
};

/** The flags applied over the file's config, then checked as a whole. */
function loadMerged(values: Flags, file: Partial<ProxyConfig>): ProxyConfig {
  const health: ProxyHealthConfig | false =
    values['no-health'] === true
      ? false
      : {
          ...(file.health === false ? {} : (file.health ?? {})),
          ...(values['health-path'] === undefined ? {} : { path: values['health-path'] }),
          ...dropUndefined({
            intervalMillis: integerFlag('--health-interval-ms', values['health-interval-ms']),
            timeoutMillis: integerFlag('--health-timeout-ms', values['health-timeout-ms']),
            rise: integerFlag('--rise', values.rise),
            fall: integerFlag('--fall', values.fall),
          }),
        };
  const strategy = values.strategy ?? file.strategy;
  if (strategy !== undefined && !isStrategyName(strategy)) {
    throw new ConfigError('strategy', `unknown strategy \`${strategy}\`; one of ${Object.keys(STRATEGY_FACTORIES).join(', ')}`);
  }
  const upstreams = values.upstream?.map(parseUpstream) ?? file.upstreams ?? [];
  if (upstreams.length === 0) throw new ConfigError('upstreams', 'give at least one (--upstream or "upstreams" in the config file)');
  const maxAttempts = integerFlag('--max-attempts', values['max-attempts']) ?? file.maxAttempts;
  return checkProxyConfig({
    ...file,
    upstreams,
    health: file.health === false && values['no-health'] !== true && Object.keys(health).length === 0 ? false : health,
    ...(values.listen === undefined ? {} : { listen: values.listen }),
    ...(values.admin === undefined ? {} : { admin: values.admin }),
    ...(strategy === undefined ? {} : { strategy }),
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
  });
}

function dropUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
