import { statementStart } from '../../../src/admin/mover/lock-blockers';

describe('statementStart: what an error may show of another session\'s statement', () => {
  test.each([
    [`alter role app password 'S3cret!'`, 'alter role app password ?'],
    [`select * from t where a = 'it''s' and b = E'x\\'y' and c = $tag$dollar$tag$ and d = $$x$$`, 'select * from t where a = ? and b = ? and c = ? and d = ?'],
    [`select 42, 3.5e3 from t1 where "col9" = 7 -- 123-45-6789\n  limit 10`, 'select ?, ? from t1 where "col9" = ? limit ?'],
    [`/* traceparent='00-abc' */ update users set name = 'Ann' where id = 9`, 'update users set name = ? where id = ?'],
    [`insert into t values (1, 'cut off by the ser`, 'insert into t values (?, ?'],
  ])('%j → %j', (sql, shown) => {
    expect(statementStart(sql)).toBe(shown);
  });

  test('long statements are cut to 80 characters; URLs lose their passwords', () => {
    const shown = statementStart(`select ${'x, '.repeat(60)}y from t`);
    expect(shown).toHaveLength(80);
    expect(shown.endsWith('…')).toBe(true);
    expect(statementStart('select dblink(postgres://u:pw@h/db)')).not.toContain('pw');
  });
});
