/** A catalog watch's reconnect waits: doubling per failed attempt, capped, with jitter; and the options that set them. */
import { reconnectDelay } from '../../../src/admin/catalog-watch';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ErrorCodes } from '../../../src/kernel/errors';

test('the wait doubles with each failed attempt up to the cap; the random factor keeps it within [half, all] of that', () => {
  const longest = [0, 1, 2, 3, 4, 5, 6, 40].map((failures) => reconnectDelay(failures, 1000, 30_000, () => 0.999_999));
  expect(longest).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  const shortest = [0, 1, 5].map((failures) => reconnectDelay(failures, 1000, 30_000, () => 0));
  expect(shortest).toEqual([500, 1000, 15_000]);
  expect(reconnectDelay(3, 0, 30_000, () => 0.5)).toBe(0);
});

test.each([
  [{ maxReconnectDelayMillis: 500, reconnectDelayMillis: 1000 }, 'maxReconnectDelayMillis'],
  [{ heartbeatIntervalMillis: 0 }, 'heartbeatIntervalMillis'],
  [{ connectionTimeoutMillis: -1 }, 'connectionTimeoutMillis'],
  [{ statementTimeoutMillis: 1.5 }, 'statementTimeoutMillis'],
])('%j is refused naming the option', (options, option) => {
  expect(() => new TopologyCatalog({ url: 'postgres://localhost/catalog', ...options })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_CONFIG, context: { option } }));
});

test('a reconnect delay above the default cap raises the cap with it', () => {
  expect(() => new TopologyCatalog({ url: 'postgres://localhost/catalog', reconnectDelayMillis: 60_000 })).not.toThrow();
});
