/**
 * Checks a proxy config (from a JSON file, flags or code) field by field before anything starts,
 * so a typo is an error naming the field (and the file) at start, not a 502 on every request.
 */
import { mathRandom, systemClock } from '../../kernel/clock';
import { ConfigError } from '../../kernel/errors';
import {
  describeValue,
  requireInteger,
  requireKnownKeys,
  requireNonEmptyString,
  requireObject,
  requirePercent,
  requirePositive,
} from '../../kernel/validate';
import type { InstanceSpec } from '../balancer-instance';
import { OutlierEjector } from '../outlier-ejection';
import { SlowStart } from '../slow-start';
import { isStrategyName, STRATEGY_FACTORIES } from '../strategies/strategy-registry';
import { splitCredentials } from './http-credentials';
import type { ProxyConfig, ProxyHealthConfig } from './proxy-config-types';
import { parseUpstream } from './proxy-config-upstream';
import { isLoopback } from './proxy-loopback';

const PROXY_CONFIG_KEYS: Readonly<Record<keyof ProxyConfig, true>> = {
  listen: true,
  admin: true,
  upstreams: true,
  strategy: true,
  strategyOptions: true,
  health: true,
  outlierEjection: true,
  slowStart: true,
  panicThresholdPercent: true,
  maxAttempts: true,
  headersTimeoutMillis: true,
  bodyTimeoutMillis: true,
};

const HEALTH_KEYS: Readonly<Record<keyof ProxyHealthConfig, true>> = { path: true, intervalMillis: true, timeoutMillis: true, rise: true, fall: true };

const UPSTREAM_KEYS: readonly string[] = ['id', 'address', 'weight', 'metadata'];

/** A listening address `host:port` (IPv6 in brackets), port 0 to 65535. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** @internal Parses `host:port`, `[::1]:port` or a bare port (host 127.0.0.1). */
export function parseListen(option: string, listen: unknown): ListenAddress {
  const text = requireNonEmptyString(option, listen);
  const colon = text.lastIndexOf(':');
  const host = colon > 0 ? text.slice(0, colon).replace(/^\[|\]$/g, '') : '127.0.0.1';
  const port = Number(colon >= 0 ? text.slice(colon + 1) : text);
  if (!Number.isInteger(port) || port < 0 || port > 65535 || host === '') {
    throw new ConfigError(option, `must be host:port such as 127.0.0.1:8080, got ${describeValue(text)}`);
  }
  return { host, port };
}

/** @internal One upstream of the config: a URL text or a spec whose address is an http(s) URL. */
export function checkUpstream(option: string, value: unknown): InstanceSpec {
  if (typeof value === 'string') {
    try {
      return parseUpstream(value);
    } catch (error) {
      if (error instanceof ConfigError) throw new ConfigError(option, error.message.replace(/^Invalid option `upstreams`: /, ''));
      throw error;
    }
  }
  const spec = requireObject(option, value);
  requireKnownKeys(option, spec, UPSTREAM_KEYS);
  requireNonEmptyString(`${option}.id`, spec.id);
  const address = requireNonEmptyString(`${option}.address`, spec.address);
  const { url } = splitCredentials(address, `${option}.address`);
  if (!/^https?:$/.test(new URL(url).protocol)) throw new ConfigError(`${option}.address`, `must be an http:// or https:// URL, got ${describeValue(url)}`);
  if (spec.weight !== undefined) requirePositive(`${option}.weight`, spec.weight as number);
  return spec as unknown as InstanceSpec;
}

/** @internal The upstreams of a config: a non-empty list with unique ids. */
export function checkUpstreams(value: unknown): InstanceSpec[] {
  if (!Array.isArray(value)) {
    throw new ConfigError('upstreams', `must be a list of URLs or { id, address } specs, got ${describeValue(value)}`);
  }
  if (value.length === 0) throw new ConfigError('upstreams', 'give at least one (--upstream or "upstreams" in the config file)');
  const specs = value.map((u, i) => checkUpstream(`upstreams[${i}]`, u));
  const seen = new Set<string>();
  specs.forEach((s, i) => {
    if (seen.has(s.id)) throw new ConfigError(`upstreams[${i}].id`, `duplicate upstream id \`${s.id}\``);
    seen.add(s.id);
  });
  return specs;
}

/**
 * @internal
 * Checks every field of a proxy config (a parsed JSON value), naming the field at fault. When
 * `partial`, `upstreams` may be absent (a config file whose upstreams come from flags).
 */
export function checkProxyConfig(raw: unknown, partial = false): ProxyConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('config', `must be a JSON object such as { "upstreams": ["http://127.0.0.1:8081"] }, got ${describeValue(raw)}`);
  }
  const c = raw as Record<string, unknown>;
  requireKnownKeys('', c, Object.keys(PROXY_CONFIG_KEYS));
  if (c.listen !== undefined) parseListen('listen', c.listen);
  if (c.admin !== undefined && !isLoopback(parseListen('admin', c.admin).host)) {
    throw new ConfigError('admin', `must be a loopback address such as 127.0.0.1:9901 (the admin endpoint has no authentication), got ${describeValue(c.admin)}`);
  }
  if (!partial || c.upstreams !== undefined) checkUpstreams(c.upstreams);
  if (c.strategy !== undefined && (typeof c.strategy !== 'string' || !isStrategyName(c.strategy))) {
    throw new ConfigError('strategy', `must be one of ${Object.keys(STRATEGY_FACTORIES).join(', ')}, got ${describeValue(c.strategy)}`);
  }
  if (c.strategyOptions !== undefined) requireObject('strategyOptions', c.strategyOptions);
  // Building the strategy checks its options (unknown keys, ranges) with their names.
  const strategyName = (c.strategy as keyof typeof STRATEGY_FACTORIES | undefined) ?? 'peak-ewma';
  STRATEGY_FACTORIES[strategyName]({ clock: systemClock, random: mathRandom, options: (c.strategyOptions as Record<string, unknown>) ?? {} });
  if (c.health !== undefined && c.health !== false) {
    const h = requireObject('health', c.health);
    requireKnownKeys('health', h, Object.keys(HEALTH_KEYS));
    if (h.path !== undefined && !(typeof h.path === 'string' && h.path.startsWith('/'))) {
      throw new ConfigError('health.path', `must be a path starting with /, got ${describeValue(h.path)}`);
    }
    if (h.intervalMillis !== undefined) requirePositive('health.intervalMillis', h.intervalMillis as number);
    if (h.timeoutMillis !== undefined) requirePositive('health.timeoutMillis', h.timeoutMillis as number);
    if (h.rise !== undefined) requireInteger('health.rise', h.rise as number, 1);
    if (h.fall !== undefined) requireInteger('health.fall', h.fall as number, 1);
  }
  if (c.outlierEjection !== undefined && c.outlierEjection !== false) new OutlierEjector(requireObject('outlierEjection', c.outlierEjection));
  if (c.slowStart !== undefined && c.slowStart !== false) new SlowStart(requireObject('slowStart', c.slowStart));
  if (c.panicThresholdPercent !== undefined) requirePercent('panicThresholdPercent', c.panicThresholdPercent as number);
  if (c.maxAttempts !== undefined) requireInteger('maxAttempts', c.maxAttempts as number, 1);
  if (c.headersTimeoutMillis !== undefined) requirePositive('headersTimeoutMillis', c.headersTimeoutMillis as number);
  if (c.bodyTimeoutMillis !== undefined) requirePositive('bodyTimeoutMillis', c.bodyTimeoutMillis as number);
  return c as unknown as ProxyConfig;
}

/**
 * @internal
 * Runs `check` and adds where the config came from (`in config file proxy.json`) to any
 * {@link ConfigError} it raises, keeping the option it names.
 */
export function inConfigFile<T>(file: string, check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const option = String(error.context.option);
    const problem = error.message.replace(/^Invalid option `[^`]*`: /, '');
    throw new ConfigError(option, `${problem} (in config file ${file})`, { ...error.context, file });
  }
}
