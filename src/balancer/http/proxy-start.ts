/**
 * A running proxy built from a checked config: balancer, health checker, HTTP server and, when
 * configured, the loopback admin endpoint. Its upstreams can change while it runs.
 */
import { mathRandom, systemClock } from '../../kernel/clock';
import { ConfigError } from '../../kernel/errors';
import { Balancer } from '../balancer';
import { HealthChecker } from '../health-checker';
import { STRATEGY_FACTORIES } from '../strategies/strategy-registry';
import { httpHealthProbe } from './http-health-probe';
import { listenProxy, type RunningProxy } from './proxy';
import { listenProxyAdmin } from './proxy-admin';
import type { ProxyConfig } from './proxy-config';
import { checkProxyConfig, checkUpstreams, parseListen } from './proxy-config-check';
import { applyUpstreams, type UpstreamChanges } from './proxy-upstreams';

export type { UpstreamChanges } from './proxy-upstreams';

/** Options of {@link startProxyFromConfig}. */
export interface StartProxyOptions {
  /**
   * Reads the config again (the CLI re-reads its file and flags), for `reload()`: on SIGHUP and
   * `POST /reload` of the admin endpoint. Only the upstreams are applied; other settings need a
   * restart.
   */
  readonly load?: () => Promise<ProxyConfig>;
}

/** A proxy started from a config, with its balancer, health checker and admin endpoint. */
export interface ProxyFromConfig {
  readonly proxy: RunningProxy;
  readonly balancer: Balancer;
  readonly healthChecker: HealthChecker | undefined;
  /** The admin endpoint, when the config has `admin`. */
  readonly admin: RunningProxy | undefined;
  /** Makes these the upstreams: removes ids no longer listed, adds new ones (they slow-start), replaces changed ones. */
  setUpstreams(upstreams: ProxyConfig['upstreams']): UpstreamChanges;
  /** Loads the config again (`StartProxyOptions.load`) and applies its upstreams; a bad config changes nothing. */
  reload(): Promise<UpstreamChanges>;
  close(): Promise<void>;
}

/** Builds the balancer, health checker and proxy a config describes, and listens. */
export async function startProxyFromConfig(config: ProxyConfig, options: StartProxyOptions = {}): Promise<ProxyFromConfig> {
  checkProxyConfig(config);
  const { host, port } = parseListen('listen', config.listen ?? '127.0.0.1:8080');
  const strategyName = config.strategy ?? 'peak-ewma';
  const strategy = STRATEGY_FACTORIES[strategyName]({ clock: systemClock, random: mathRandom, options: config.strategyOptions ?? {} });
  const balancer = new Balancer({
    strategy,
    instances: checkUpstreams(config.upstreams),
    ...(config.outlierEjection === undefined ? {} : { outlierEjection: config.outlierEjection }),
    ...(config.slowStart === undefined ? {} : { slowStart: config.slowStart }),
    ...(config.panicThresholdPercent === undefined ? {} : { panicThresholdPercent: config.panicThresholdPercent }),
  });
  const setUpstreams = (upstreams: ProxyConfig['upstreams']): UpstreamChanges => applyUpstreams(balancer, upstreams);
  const reload = async (): Promise<UpstreamChanges> => {
    if (options.load === undefined) throw new ConfigError('load', 'this proxy was started without a way to reload its config');
    return setUpstreams((await options.load()).upstreams);
  };
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
  let admin: RunningProxy | undefined;
  try {
    if (config.admin !== undefined) {
      admin = await listenProxyAdmin({ balancer, ...parseListen('admin', config.admin), ...(options.load === undefined ? {} : { reload }) });
    }
  } catch (error) {
    healthChecker?.stop();
    await proxy.close();
    throw error;
  }
  return {
    proxy,
    balancer,
    healthChecker,
    admin,
    setUpstreams,
    reload,
    close: async () => {
      healthChecker?.stop();
      await Promise.all([proxy.close(), admin?.close()]);
    },
  };
}

function dropUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
