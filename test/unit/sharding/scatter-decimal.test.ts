/** Exact decimal arithmetic as PostgreSQL's numeric does it: sums, avg division, ordering, canonical form. */
import {
  addDecimal,
  canonicalDecimal,
  compareDecimal,
  divideDecimalLikePostgres,
  formatDecimal,
  parseDecimal,
  type Decimal,
} from '../../../src/sharding/scatter/scatter-decimal';

const d = (text: string): Decimal => {
  const parsed = parseDecimal(text);
  if (parsed === undefined) throw new Error(text);
  return parsed;
};
const avg = (sum: string, count: number): string => formatDecimal(divideDecimalLikePostgres(d(sum), BigInt(count)));

describe('decimal arithmetic', () => {
  test('addition is exact and keeps the larger scale, as PostgreSQL prints sum(numeric)', () => {
    expect(formatDecimal(addDecimal(d('1.50'), d('2.5')))).toBe('4.00');
    expect(formatDecimal(addDecimal(d('0.1'), d('0.2')))).toBe('0.3');
    expect(formatDecimal(addDecimal(d('9007199254740993'), d('9007199254740993')))).toBe('18014398509481986');
    expect(formatDecimal(addDecimal(d('-1.25'), d('1.25')))).toBe('0.00');
    expect(formatDecimal(addDecimal(d('NaN'), d('1')))).toBe('NaN');
    expect(formatDecimal(addDecimal(d('Infinity'), d('-Infinity')))).toBe('NaN');
    expect(formatDecimal(addDecimal(d('-Infinity'), d('5')))).toBe('-Infinity');
  });

  test('division reproduces numeric_div (values checked against PostgreSQL 15)', () => {
    expect(avg('3', 2)).toBe('1.5000000000000000');
    expect(avg('0', 1)).toBe('0.00000000000000000000');
    expect(avg('5', 3)).toBe('1.6666666666666667');
    expect(avg('3.75', 2)).toBe('1.8750000000000000');
    expect(avg('30000', 2)).toBe('15000.000000000000');
    expect(avg('-0.00005', 2)).toBe('-0.000025000000000000000000');
    expect(avg('-3', 2)).toBe('-1.5000000000000000');
    expect(avg('100000000', 2)).toBe('50000000.000000000000');
    expect(avg('27151486383461863390', 1093)).toBe('24841250122106005');
  });

  test('ordering puts NaN above infinity above numbers', () => {
    const sorted = ['NaN', '10', '-Infinity', '9', '-0.5', 'Infinity', '9.000'].map(d).sort(compareDecimal).map(formatDecimal);
    expect(sorted).toEqual(['-Infinity', '-0.5', '9', '9.000', '10', 'Infinity', 'NaN']);
  });

  test('canonical form makes 1.0 and 1.00 equal', () => {
    expect(canonicalDecimal(d('1.0'))).toBe(canonicalDecimal(d('1.00')));
    expect(canonicalDecimal(d('10'))).not.toBe(canonicalDecimal(d('1')));
    expect(parseDecimal('abc')).toBeUndefined();
  });
});
