/** The proxy's configuration, as a file or flags give it (types only, so the checks and the loader share them without a cycle). */
import type { InstanceSpec } from '../balancer-instance';
import type { OutlierEjectionOptions } from '../outlier-ejection';
import type { SlowStartOptions } from '../slow-start';
import type { StrategyName } from '../strategies/strategy-registry';

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
  /**
   * `host:port` of the admin endpoint (list, add and remove upstreams, reload the config), which
   * must be a loopback address: it has no authentication. Off when absent.
   */
  readonly admin?: string;
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
