/**
 * Construction-time checks the balancer's components share, on top of the kernel's validation
 * helpers: an options bag with only known keys, a strategy that is an object (not a name or an
 * uncalled factory), a clock, a random source. Each error names the option.
 */
import type { Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { describeValue, requireKnownKeys, requireObject } from '../kernel/validate';
import type { Strategy } from './balancer-strategy';

/**
 * @internal
 * The options bag `value` (`undefined` gives `{}`) after checking it is an object whose keys are
 * all in `known` (a record so that an option added to the type without a key here fails to
 * compile). `where` prefixes option names in errors (`''` at the top level).
 */
export function requireOptions<T extends object>(where: string, value: T | undefined, known: Readonly<Record<keyof T & string, true>>): T {
  if (value === undefined) return {} as T;
  requireObject(where === '' ? 'options' : where, value);
  requireKnownKeys(where, value, Object.keys(known));
  return value;
}

/** Factories by the names a config file uses, for hints. */
const FACTORY_HINT = 'roundRobin(), leastConnections(), peakEwma(), consistentHash(), …';

/** @internal Asserts `value` is a {@link Strategy}: an object with a `name` and a `pick()`. */
export function requireStrategy(option: string, value: unknown): Strategy {
  if (typeof value === 'function') {
    const name = (value as { name?: unknown }).name;
    throw new ConfigError(
      option,
      `must be a Strategy object, got a function: call the factory (${typeof name === 'string' && name !== '' ? `${name}()` : 'e.g. roundRobin()'})`,
    );
  }
  if (typeof value === 'string') {
    throw new ConfigError(option, `must be a Strategy object such as ${FACTORY_HINT}, not a name; got ${describeValue(value)}`);
  }
  const candidate = value as Partial<Strategy> | null;
  if (candidate === null || typeof candidate !== 'object' || typeof candidate.pick !== 'function' || typeof candidate.name !== 'string') {
    throw new ConfigError(option, `must be a Strategy (an object with \`name\` and \`pick()\`) such as ${FACTORY_HINT}; got ${describeValue(value)}`);
  }
  return candidate as Strategy;
}

/** @internal Asserts `value` is a {@link Clock}. */
export function requireClock(option: string, value: unknown): Clock {
  const c = value as Partial<Clock> | null;
  if (c === null || typeof c !== 'object' || typeof c.now !== 'function' || typeof c.monotonicNow !== 'function' || typeof c.setTimeout !== 'function') {
    throw new ConfigError(option, `must be a Clock (now(), monotonicNow(), setTimeout()) such as systemClock or a ManualClock; got ${describeValue(value)}`);
  }
  return c as Clock;
}
