import { quoteLiteral, quoteTable, slotBitsLiteral } from '../../../src/admin/mover/shard-guard-sql';
import { keyArraySql } from '../../../src/admin/mover/table-keys';
import { schemaDiff } from '../../../src/admin/mover/schema-compare';

describe('SQL text of the mover', () => {
  test('quotes identifiers, literals and key arrays so no value can end the statement', () => {
    expect(quoteTable('app.ord"ers')).toBe('"app"."ord""ers"');
    expect(quoteLiteral("it's")).toBe("'it''s'");
    expect(keyArraySql(['1', 'a"b', "c'd", 'e\\f'], 'text')).toBe(`'{"1","a\\"b","c''d","e\\\\f"}'::text[]`);
  });

  test('a slot set becomes a bit string with slot s at position s from the left', () => {
    expect(slotBitsLiteral([0, 3], 5)).toBe("B'10010'");
  });

  test('a schema diff lists only the lines one side lacks', () => {
    expect(schemaDiff({ id: 'a', lines: ['t column 1: id bigint', 't column 2: x text'] }, { id: 'b', lines: ['t column 1: id bigint', 't column 2: x integer'] })).toEqual([
      '- a: t column 2: x text',
      '+ b: t column 2: x integer',
    ]);
  });
});
