import { ConfigError } from './errors';

/** Asserts `value` is a finite number > 0; the error names the option. */
export function requirePositive(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(option, `must be a finite number > 0, got ${String(value)}`);
  }
  return value;
}

/** Asserts `value` is a finite number ≥ 0; the error names the option. */
export function requireNonNegative(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ConfigError(option, `must be a finite number >= 0, got ${String(value)}`);
  }
  return value;
}

/** Asserts `value` is an integer ≥ `min`; the error names the option. */
export function requireInteger(option: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(option, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** Asserts `value` is within [0, 1]; the error names the option. */
export function requireRatio(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new ConfigError(option, `must be a number between 0 and 1, got ${String(value)}`);
  }
  return value;
}

/** Asserts `value` is within [0, 100]; the error names the option. */
export function requirePercent(option: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 100) {
    throw new ConfigError(option, `must be a number between 0 and 100, got ${String(value)}`);
  }
  return value;
}
