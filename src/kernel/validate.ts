/**
 * Options validation, one wording for every option error: ``Invalid option `name`: must be …, got …``
 * (a {@link ConfigError} whose `context.option` names the option). Every component validates its
 * options at construction with these, so a typo fails at start, not at the first call.
 */
import { ConfigError } from './errors';

/** How a received value is shown in an error: short, and never the whole of a large object. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function fail(option: string, expected: string, value: unknown): never {
  throw new ConfigError(option, `must be ${expected}, got ${describeValue(value)}`);
}

/** Asserts `value` is a finite number > 0. */
export function requirePositive(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail(option, 'a finite number > 0', value);
  return value;
}

/** Asserts `value` is a finite number ≥ 0. */
export function requireNonNegative(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(option, 'a finite number >= 0', value);
  return value;
}

/** Asserts `value` is an integer ≥ `min` (and ≤ `max` when given). */
export function requireInteger(option: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    fail(option, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`, value);
  }
  return value;
}

/** Asserts `value` is within [0, 1]. */
export function requireRatio(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) fail(option, 'a number between 0 and 1', value);
  return value;
}

/** Asserts `value` is within [0, 100]. */
export function requirePercent(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 100) fail(option, 'a number between 0 and 100', value);
  return value;
}

/** Asserts `value` is a boolean. */
export function requireBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(option, 'true or false', value);
  return value;
}

/** Asserts `value` is a non-empty string. */
export function requireNonEmptyString(option: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') fail(option, 'a non-empty string', value);
  return value;
}

/** Asserts `value` is a function; `shape` describes it in the error (`(instance) => boolean`). */
export function requireFunction<F extends (...args: never[]) => unknown>(option: string, value: unknown, shape: string): F {
  if (typeof value !== 'function') fail(option, `a function ${shape}`, value);
  return value as F;
}

/** Asserts `value` is one of `allowed`. */
export function requireOneOf<T extends string>(option: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    fail(option, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}

/** Asserts `value` is a plain object (the options bag of a component). */
export function requireObject(option: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(option, 'an object', value);
  return value as Record<string, unknown>;
}

/**
 * Refuses keys of an options object that the component does not know, naming the closest known one,
 * so `timeoutMs` for `timeoutMillis` fails at construction instead of being ignored.
 */
export function requireKnownKeys(where: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const hint = closest(key, known);
    throw new ConfigError(
      where === '' ? key : `${where}.${key}`,
      `is not an option${hint === undefined ? '' : ` (did you mean \`${hint}\`?)`}; known options: ${known.join(', ')}`,
    );
  }
}

function closest(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestScore = Infinity;
  for (const k of known) {
    const score = editDistance(lower, k.toLowerCase());
    if (score < bestScore) {
      bestScore = score;
      best = k;
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
