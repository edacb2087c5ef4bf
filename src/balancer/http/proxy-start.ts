/** A running proxy built from a checked config: balancer, health checker and HTTP server. */
import { mathRandom, systemClock } from '../../kernel/clock';
import { Balancer } from '../balancer';
import { HealthChecker } from '../health-checker';
import { STRATEGY_FACTORIES } from '../strategies/strategy-registry';
import { httpHealthProbe } from './http-health-probe';
import { listenProxy, type RunningProxy } from './proxy';
import type { ProxyConfig } from './proxy-config';
import { checkProxyConfig, checkUpstreams, parseListen } from './proxy-config-check';

/** A proxy started from a config, with its balancer and health checker. */
export interface ProxyFromConfig {
  readonly proxy: RunningProxy;
  readonly balancer: Balancer;
  readonly healthChecker: HealthChecker | undefined;
  close(): Promise<void>;
}

/** Builds the balancer, health checker and proxy a config describes, and listens. */
export async function startProxyFromConfig(config: ProxyConfig): Promise<ProxyFromConfig> {
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

function dropUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
