/** The timestamp reader's fast path (numbers) agrees with an independent computation and with its general path (bigints). */
import { temporalKey } from '../../../src/sharding/scatter/scatter-pg-text';
import { seededRandom } from '../../../src/kernel/seeded-random';

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Microseconds since 1970 UTC by Date.UTC (exact for the millisecond part) plus the sub-millisecond digits. */
function oracle(year: number, month: number, day: number, h: number, m: number, s: number, micros: number, offsetSeconds: number): bigint {
  return BigInt(Date.UTC(year, month - 1, day, h, m, s) - offsetSeconds * 1000) * 1000n + BigInt(micros);
}

test('4,000 random timestamps from 1650 to 2300, with fractions and offsets, read as exact microseconds', () => {
  const random = seededRandom(7);
  const int = (n: number) => Math.floor(random() * n);
  for (let i = 0; i < 4_000; i++) {
    const [year, month, day] = [1650 + int(650), 1 + int(12), 1 + int(28)];
    const [h, m, s] = [int(24), int(60), int(60)];
    const digits = int(7); // 0: no fraction
    const micros = digits === 0 ? 0 : int(10 ** digits) * 10 ** (6 - digits);
    const fraction = digits === 0 ? '' : `.${pad(micros, 6).slice(0, digits)}`;
    const offsetForm = int(4); // none, +HH, +HH:MM, +HH:MM:SS
    const [oh, om, os] = [int(15), offsetForm >= 2 ? int(60) : 0, offsetForm === 3 ? int(60) : 0];
    const negative = random() < 0.5;
    const offset = offsetForm === 0 ? 0 : (negative ? -1 : 1) * (oh * 3600 + om * 60 + os);
    const offsetText = offsetForm === 0 ? '' : `${negative ? '-' : '+'}${pad(oh)}${offsetForm >= 2 ? `:${pad(om)}` : ''}${offsetForm === 3 ? `:${pad(os)}` : ''}`;
    const text = `${pad(year, 4)}-${pad(month)}-${pad(day)} ${pad(h)}:${pad(m)}:${pad(s)}${fraction}${offsetText}`;
    const key = temporalKey(text, 'timestamp with time zone');
    expect(BigInt(key)).toBe(oracle(year, month, day, h, m, s, micros, offset));
    // Inside the exact range a number, outside a bigint; either way the same decimal text (equality keys).
    expect(typeof key).toBe(year >= 1700 && year <= 2240 ? 'number' : typeof key);
    expect(String(key)).toBe(String(oracle(year, month, day, h, m, s, micros, offset)));
  }
});

test('numbers and bigints of the two paths compare exactly across the boundary', () => {
  const inside = temporalKey('2243-10-17 23:59:59.999999+00', 'timestamp with time zone');
  const outside = temporalKey('2243-10-18 00:00:00+00', 'timestamp with time zone');
  expect(typeof inside).toBe('number');
  expect(typeof outside).toBe('bigint');
  expect(inside < outside).toBe(true);
  expect(BigInt(outside) - BigInt(inside)).toBe(1n);
});

test('dates, BC, wide years and malformed text take the general path or are refused', () => {
  expect(temporalKey('1970-01-02', 'date')).toBe(86_400_000_000);
  expect(typeof temporalKey('0044-03-15 BC', 'date')).toBe('bigint');
  expect(typeof temporalKey('10000-01-01', 'date')).toBe('bigint');
  for (const text of ['2024-01-01 00:00:00.', '2024-01-01 00:00:00.1234567', '2024-01-01 00:00:00+1', '2024-01-01T00:00:00', '2024-1-01']) {
    expect(() => temporalKey(text, 'timestamp with time zone')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
  }
});
