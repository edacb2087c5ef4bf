/** Comparing values outside PostgreSQL as PostgreSQL orders them, per column type; refusing what cannot be. */
import { compareCodePoints, valueComparer } from '../../../src/sharding/scatter/scatter-compare';
import { RoutingError } from '../../../src/sharding/sharding-errors';

describe('value comparison', () => {
  test('text is in code-point order (C collation), not UTF-16 order', () => {
    expect(compareCodePoints('\uff21', '😀')).toBeLessThan(0);
    expect('\uff21' < '😀').toBe(false); // what a naive JS comparison would get wrong
    expect(compareCodePoints('B', 'a')).toBeLessThan(0);
    expect(compareCodePoints('a', 'ab')).toBeLessThan(0);
  });

  test('the PostgreSQL type decides how strings compare', () => {
    expect(valueComparer('bigint', compareCodePoints).compare('10', '9')).toBeGreaterThan(0);
    expect(valueComparer('text', compareCodePoints).compare('10', '9')).toBeLessThan(0);
    expect(valueComparer('character', compareCodePoints).compare('ab  ', 'ab')).toBe(0);
    expect(valueComparer('double precision', compareCodePoints).compare(Number.NaN, Infinity)).toBeGreaterThan(0);
    expect(() => valueComparer('interval', compareCodePoints).compare('1 day', '2 days')).toThrow(/E_UNSUPPORTED_SCATTER|cannot be ordered/);
  });

  test('a value it cannot compare is refused with a routing error naming the type in its context', () => {
    let error: unknown;
    try {
      valueComparer('interval', compareCodePoints).compare('1 day', '2 days');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RoutingError);
    expect(error).toMatchObject({ code: 'E_UNSUPPORTED_SCATTER', context: { unsupported: 'text values of type interval cannot be ordered outside PostgreSQL' } });
    expect(() => valueComparer('numeric', compareCodePoints).key({})).toThrow(expect.objectContaining({ context: { unsupported: 'values of type numeric cannot be compared for equality outside PostgreSQL' } }));
  });
});
