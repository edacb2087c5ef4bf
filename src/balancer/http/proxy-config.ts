/**
 * The proxy's configuration: a JSON file and/or command-line flags turned into a running proxy.
 * Kept apart from the CLI so it can be tested and embedded.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Balancer } from '../balancer';
import { mathRandom, systemClock } from '../../kernel/clock';
import type { InstanceSpec } from '../balancer-instance';
import { HealthChecker } from '../health-checker';
import { httpHealthProbe } from './http-health-probe';
import type { OutlierEjectionOptions } from '../outlier-ejection';
import { listenProxy, type RunningProxy } from './proxy';
import type { SlowStartOptions } from '../slow-start';
import { isStrategyName, STRATEGY_FACTORIES, type StrategyName } from '../strategies/strategy-registry';
import { redactAddress, redactText } from '../../kernel/redact';
import { ConfigError } from '../../kernel/errors';

/** Health-check settings of the proxy config. */
export interface ProxyHealthConfig {
  /** @default '/health' */
  readonly path?: string;
  /** @default 2000 */
  readonly intervalMillis?: number;
  /** @default 1000 */
  readonly timeoutMillis?: number;
  /** @default 2 */
  readonly rise?: number;
  /** @default 3 */
  readonly fall?: number;
}

/** The proxy's config file (JSON). */
export interface ProxyConfig {
  /**
   * `host:port` to listen on.
   * @default '127.0.0.1:8080'
   */
  readonly listen?: string;
  /** Upstream instances: URLs (`http://10.0.0.1:8080`, id = URL) or full specs. */
  readonly upstreams: ReadonlyArray<string | InstanceSpec>;
  /**
   * Strategy name.
   * @default 'peak-ewma'
   */
  readonly strategy?: StrategyName;
  /** Options passed to the strategy factory (e.g. `{ "decayTimeMillis": 5000 }`). */
  readonly strategyOptions?: Readonly<Record<string, unknown>>;
  /**
   * Active health checks, or `false` for none.
   * @default {}
   */
  readonly health?: ProxyHealthConfig | false;
  /** @default OUTLIER_EJECTION_DEFAULTS */
  readonly outlierEjection?: OutlierEjectionOptions | false;
  /** @default SLOW_START_DEFAULTS */
  readonly slowStart?: SlowStartOptions | false;
  /** @default 0 */
  readonly panicThresholdPercent?: number;
  /** Retries of idempotent body-less requests. @default 3 */
  readonly maxAttempts?: number;
  /** @default 30000 */
  readonly headersTimeoutMillis?: number;
  /** @default 30000 */
  readonly bodyTimeoutMillis?: number;
}

/** @internal Usage text of the CLI. */
export const PROXY_USAGE = `Usage: kysely-scale-proxy [--config file.json] [options]

  --config <file>            JSON config (flags below override it)
  --listen <host:port>       address to listen on (default 127.0.0.1:8080)
  --upstream <url>           an upstream, repeatable (id=url or url; weight with url#3)
  --strategy <name>          ${Object.keys(STRATEGY_FACTORIES).join(' | ')} (default peak-ewma)
  --health-path <path>       health check path (default /health)
  --health-interval-ms <n>   time between checks (default 2000)
  --health-timeout-ms <n>    check timeout (default 1000)
  --rise <n>                 passes to come back (default 2)
  --fall <n>                 failures to go down (default 3)
  --no-health                no active health checks
  --max-attempts <n>         attempts of idempotent requests (default 3)
  --help                     this text

Statistics: GET /__balancer/stats (JSON), GET /__balancer/metrics (Prometheus).`;

function integerFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new ConfigError(name, `must be an integer, got \`${value}\``);
  return n;
}

/**
 * @internal
 * Parses `id=url#weight`, `url#weight` or `url`. Without an id, the id is the URL with any
 * password replaced by `***` (ids appear in statistics, metrics, errors and logs).
 */
export function parseUpstream(text: string): InstanceSpec {
  const eq = text.indexOf('=');
  const id = eq > 0 && !text.slice(0, eq).includes('/') ? text.slice(0, eq) : undefined;
  const rest = id === undefined ? text : text.slice(eq + 1);
  const hash = rest.lastIndexOf('#');
  const address = hash >= 0 ? rest.slice(0, hash) : rest;
  const weightText = hash >= 0 ? rest.slice(hash + 1) : undefined;
  // Nothing after `#` is ever echoed: it may be the rest of a password (`alice:1234#secret@host`).
  const shown = redactText(text);
  if (weightText?.includes('@') === true) {
    throw new ConfigError(
      'upstreams',
      `\`${shown}\` has a \`#\` in its password: write it as %23 (a \`#\` after the URL sets a weight, as in url#3)`,
    );
  }
  try {
    new URL(address);
  } catch {
    throw new ConfigError('upstreams', `\`${shown}\` is not a URL such as http://127.0.0.1:8081`);
  }
  const weight = weightText === undefined ? undefined : Number(weightText);
  if (weight !== undefined && !(weightText !== '' && Number.isFinite(weight) && weight > 0)) {
    throw new ConfigError('upstreams', `weight of \`${redactAddress(address)}\` (after its last \`#\`) must be a finite number > 0`);
  }
  const finalId = id ?? redactAddress(address);
  return weight === undefined ? { id: finalId, address } : { id: finalId, address, weight };
}

/** Reads `--config` (if given) and applies the flags over it. */
export async function loadProxyConfig(argv: readonly string[]): Promise<ProxyConfig | 'help'> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      config: { type: 'string' },
      listen: { type: 'string' },
      upstream: { type: 'string', multiple: true },
      strategy: { type: 'string' },
      'health-path': { type: 'string' },
      'health-interval-ms': { type: 'string' },
      'health-timeout-ms': { type: 'string' },
      rise: { type: 'string' },
      fall: { type: 'string' },
      'no-health': { type: 'boolean' },
      'max-attempts': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) return 'help';
  const file: Partial<ProxyConfig> =
    values.config === undefined ? {} : (JSON.parse(await readFile(values.config, 'utf8')) as Partial<ProxyConfig>);
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
  return {
    ...file,
    upstreams,
    health: file.health === false && values['no-health'] !== true && Object.keys(health).length === 0 ? false : health,
    ...(values.listen === undefined ? {} : { listen: values.listen }),
    ...(strategy === undefined ? {} : { strategy }),
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
  };
}

function dropUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A proxy started from a config, with its balancer and health checker. */
export interface ProxyFromConfig {
  readonly proxy: RunningProxy;
  readonly balancer: Balancer;
  readonly healthChecker: HealthChecker | undefined;
  close(): Promise<void>;
}

/** Builds the balancer, health checker and proxy a config describes, and listens. */
export async function startProxyFromConfig(config: ProxyConfig): Promise<ProxyFromConfig> {
  const listen = config.listen ?? '127.0.0.1:8080';
  const colon = listen.lastIndexOf(':');
  const host = colon > 0 ? listen.slice(0, colon).replace(/^\[|\]$/g, '') : '127.0.0.1';
  const port = Number(colon >= 0 ? listen.slice(colon + 1) : listen);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError('listen', `\`${listen}\` is not host:port`);
  const strategyName = config.strategy ?? 'peak-ewma';
  const strategy = STRATEGY_FACTORIES[strategyName]({ clock: systemClock, random: mathRandom, options: config.strategyOptions ?? {} });
  const balancer = new Balancer({
    strategy,
    instances: config.upstreams.map((u) => (typeof u === 'string' ? parseUpstream(u) : u)),
    ...(config.outlierEjection === undefined ? {} : { outlierEjection: config.outlierEjection }),
    ...(config.slowStart === undefined ? {} : { slowStart: config.slowStart }),
    ...(config.panicThresholdPercent === undefined ? {} : { panicThresholdPercent: config.panicThresholdPercent }),
  });
  let healthChecker: HealthChecker | undefined;
  if (config.health !== false) {
    const { path, ...rest } = config.health ?? {};
    healthChecker = new HealthChecker(balancer, { ...rest, probe: httpHealthProbe(path === undefined ? {} : { path }) });
    healthChecker.start();
  }
  const proxy = await listenProxy({
    balancer,
    host,
    port,
    ...dropUndefined({
      maxAttempts: config.maxAttempts,
      headersTimeoutMillis: config.headersTimeoutMillis,
      bodyTimeoutMillis: config.bodyTimeoutMillis,
    }),
  });
  return {
    proxy,
    balancer,
    healthChecker,
    close: async () => {
      healthChecker?.stop();
      await proxy.close();
    },
  };
}
