import type { Clock, RandomSource } from '../../kernel/clock';
import type { Strategy } from '../balancer-strategy';
import { consistentHash } from './consistent-hash';
import { costAware } from './cost-aware';
import { dynamicSelector } from './dynamic-selector';
import { leastConnections } from './least-connections';
import { loadAdjustedLatency } from './load-adjusted-latency';
import { peakEwma } from './peak-ewma';
import { powerOfTwoChoices } from './power-of-two-choices';
import { resourceAware } from './resource-aware';
import { roundRobin } from './round-robin';
import { smoothWeightedRoundRobin } from './smooth-weighted-round-robin';
import { weightedRandom } from './random';

/** @internal What a strategy factory may be given when built by name (config files, the proxy CLI). */
export interface StrategyContext {
  readonly clock: Clock;
  readonly random: RandomSource;
  /** Strategy-specific options from the config file, passed through. */
  readonly options: Readonly<Record<string, unknown>>;
}

/** Names a strategy can be chosen by in a config file or on the command line. */
export type StrategyName =
  | 'round-robin'
  | 'smooth-weighted-round-robin'
  | 'random'
  | 'least-connections'
  | 'power-of-two-choices'
  | 'peak-ewma'
  | 'consistent-hash'
  | 'resource-aware'
  | 'load-adjusted-latency'
  | 'cost-aware'
  | 'dynamic';

/** @internal One factory per name: adding a name without a factory does not compile. */
export const STRATEGY_FACTORIES: Readonly<Record<StrategyName, (context: StrategyContext) => Strategy>> = Object.freeze({
  'round-robin': () => roundRobin(),
  'smooth-weighted-round-robin': () => smoothWeightedRoundRobin(),
  random: (c) => weightedRandom({ random: c.random }),
  'least-connections': () => leastConnections(),
  'power-of-two-choices': (c) => powerOfTwoChoices({ random: c.random }),
  'peak-ewma': (c) => peakEwma({ ...c.options, clock: c.clock }),
  'consistent-hash': (c) => consistentHash({ ...c.options, random: c.random }),
  'resource-aware': (c) => resourceAware(c.options),
  'load-adjusted-latency': (c) => loadAdjustedLatency(c.options),
  'cost-aware': (c) => costAware(c.options),
  dynamic: (c) => dynamicSelector({ clock: c.clock }),
});

/** @internal `true` when `name` is a known strategy name. */
export function isStrategyName(name: string): name is StrategyName {
  return Object.prototype.hasOwnProperty.call(STRATEGY_FACTORIES, name);
}
