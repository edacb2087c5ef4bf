/** Comparing values outside PostgreSQL as PostgreSQL orders them, per column type, from PostgreSQL's text; refusing what cannot be. */
import { compareCodePoints, exactOrder, valueComparer } from '../../../src/sharding/scatter/scatter-compare';
import { RoutingError } from '../../../src/sharding/sharding-errors';

const compare = (type: string, a: string, b: string): number => Math.sign(valueComparer(type, compareCodePoints).compare(a, b));
const key = (type: string, text: string): string => valueComparer(type, compareCodePoints).key(text);

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
    expect(compare('double precision', '1e+20', '99999999999999990000')).toBe(1);
    expect(compare('real', '1.5e-07', '1.4e-07')).toBe(1);
    expect(key('double precision', '-0')).toBe(key('double precision', '0'));
  });

  test('timestamps, timestamptz and dates compare to the microsecond, offsets and eras included', () => {
    expect(compare('timestamp with time zone', '2024-01-01 00:00:00.0009+00', '2024-01-01 00:00:00.0001+00')).toBe(1);
    expect(compare('timestamp without time zone', '2024-01-01 00:00:00.000001', '2024-01-01 00:00:00')).toBe(1);
    // 01:10-08 is later than 01:30-07 (the hour a DST change repeats), though its text sorts first.
    expect(compare('timestamp with time zone', '2024-11-03 01:10:00-08', '2024-11-03 01:30:00-07')).toBe(1);
    expect(key('timestamp with time zone', '2024-01-01 02:00:00+02')).toBe(key('timestamp with time zone', '2024-01-01 00:00:00+00'));
    expect(compare('timestamp with time zone', '1900-01-01 00:00:00+00:53:28', '1900-01-01 00:00:00+00')).toBe(-1);
    expect(compare('date', '0044-03-15 BC', '0001-01-01')).toBe(-1);
    expect(compare('date', '0002-01-01 BC', '0001-01-01 BC')).toBe(-1);
    expect(compare('date', '10000-01-01', '9999-12-31')).toBe(1);
    expect(compare('timestamp without time zone', 'infinity', '294276-12-31 23:59:59.999999')).toBe(1);
    expect(compare('date', '-infinity', '4713-01-01 BC')).toBe(-1);
  });

  test('timetz by UTC time then zone; interval by its 30-day-month span', () => {
    expect(compare('time with time zone', '10:00:00+02', '09:00:00+00')).toBe(-1);
    expect(compare('time with time zone', '10:00:00+02', '08:00:00+00')).toBe(-1); // same instant: the zone east sorts first
    expect(key('time with time zone', '10:00:00+02')).not.toBe(key('time with time zone', '08:00:00+00'));
    expect(key('interval', '1 mon')).toBe(key('interval', '30 days'));
    expect(key('interval', '30 days')).toBe(key('interval', '720:00:00'));
    expect(compare('interval', '1 year', '360 days')).toBe(0);
    expect(compare('interval', '1 year', '360 days 00:00:00.000001')).toBe(-1);
    expect(compare('interval', '1 year 2 mons -3 days', '416 days 23:59:59')).toBe(1);
    expect(compare('interval', '-1 days +23:59:59.999999', '00:00:00')).toBe(-1);
    expect(compare('interval', '00:00:00.000002', '00:00:00.000001')).toBe(1);
    expect(compare('interval', '1 day -00:00:01', '23:59:59')).toBe(0);
  });

  test('bytea, uuid, inet/cidr, booleans and arrays in PostgreSQL order', () => {
    expect(compare('bytea', '\\x00ff', '\\x0100')).toBe(-1);
    expect(compare('bytea', '\\x01', '\\x0100')).toBe(-1);
    expect(compare('uuid', '0000000a-0000-0000-0000-000000000000', '00000009-0000-0000-0000-000000000000')).toBe(1);
    expect(compare('boolean', 'f', 't')).toBe(-1);
    expect(compare('inet', '10.0.0.1', '::1')).toBe(-1); // IPv4 before IPv6
    expect(compare('inet', '10.0.0.0/8', '10.0.0.1')).toBe(-1); // same prefix: the shorter mask first
    expect(compare('cidr', '192.168.0.0/16', '10.0.0.0/8')).toBe(1);
    expect(compare('inet', '::ffff:1.2.3.4', '::ffff:1.2.3.5')).toBe(-1);
    expect(compare('inet', '2001:db8::1', '2001:db8:0:0:0:0:0:1')).toBe(0);
    expect(compare('integer[]', '{1,2}', '{1,10}')).toBe(-1);
    expect(compare('integer[]', '{1,NULL}', '{1,2}')).toBe(1); // NULL above any value
    expect(compare('integer[]', '{1}', '{1,0}')).toBe(-1); // fewer items first
    expect(compare('integer[]', '{{1,2}}', '{1,2}')).toBe(1); // more dimensions after
    expect(compare('integer[]', '[0:1]={1,2}', '{1,2}')).toBe(-1); // lower bounds last
    expect(compare('text[]', '{"a b","c\\"d"}', '{"a b","c#"}')).toBe(-1); // the quote is unescaped: '"' sorts before '#'
    expect(compare('timestamp with time zone[]', '{"2024-01-01 00:00:00.0009+00"}', '{"2024-01-01 00:00:00.0001+00"}')).toBe(1);
    expect(key('numeric[]', '{1.0}')).toBe(key('numeric[]', '{1.00}'));
    expect(key('integer[]', '{}')).not.toBe(key('integer[]', '{NULL}'));
  });

  test('a type it cannot order or compare exactly is refused with a routing error naming the type in its context', () => {
    for (const type of ['jsonb', 'mood', 'money', 'int4range', 'jsonb[]']) {
      let error: unknown;
      try {
        exactOrder(type, compareCodePoints).read('x');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(RoutingError);
      expect(error).toMatchObject({ code: 'E_UNSUPPORTED_SCATTER', context: { unsupported: `values of type ${type.replace('[]', '')} cannot be ordered or compared exactly outside PostgreSQL` } });
    }
  });

  test('text it does not recognise is refused, never guessed', () => {
    expect(() => key('timestamp with time zone', 'Mon Jan 01 00:00:00 2024 PST')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
    expect(() => key('interval', '@ 1 day')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
    expect(() => key('bytea', '\\001')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
    expect(() => key('numeric', 'abc')).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
    expect(() => valueComparer('numeric', compareCodePoints).key({})).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
  });
});
