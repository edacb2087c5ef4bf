import { statementStart } from '../../../src/admin/mover/lock-blockers';

describe('statementStart: what an error may show of another session\'s statement', () => {
  test.each([
    [`alter role app password 'S3cret!'`, 'alter role app password ?'],
    [`select * from t where a = 'it''s' and b = E'x\\'y'`, 'select * from t where a = ? and b = ?'],
    [`select 42, 3.5e3 from t1 where "col9" = 7 -- 123-45-6789\n  limit 10`, 'select ?, ? from t1 where "col9" = ? limit ?'],
    [`/* traceparent='00-abc' */ update users set name = 'Ann' where id = 9`, 'update users set name = ? where id = ?'],
    [`insert into t values (1, 'cut off by the ser`, 'insert into t values (?, ?'],
    [`select count(*) from orders where amount > 0 and 'tok-Sekret-42' <> ''`, 'select count(*) from orders where amount > ? and ? <> ?'],
    [`select $1::int, t.x from t where id = any($2::bigint[])`, 'select $1::int, t.x from t where id = any($2::bigint[])'],
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

/**
 * Statements whose literals hold "sekret": none may show any part of it, however the literals are
 * written. The first is the drain refusal that printed a token: a backslash ending a standard
 * string was read as escaping its quote, so the next literal's text was shown as names.
 */
describe('no literal survives', () => {
  test.each([
    // A backslash is an ordinary character in a standard string: the old lexer took `\'` as an escaped quote.
    ["a Windows path ending in a backslash", `update jobs set path = 'C:\\tmp\\' and token = 'tok-Sekret-42' where id = 1`, 'update jobs set path = ?…'],
    ['a backslash inside a standard string', `select 'a\\b', 'sekret' from t`, 'select ?, ? from t'],
    ['an even run of backslashes before the quote', `select 'a\\\\', 'sekret'`, 'select ?, ?'],
    ['an E-string with an escaped quote', `select E'it\\'s sekret', e'\\\\' from t`, 'select ?, ? from t'],
    ['an E-string whose escaped quote hides a fake end', `select E'x\\' or 1 = 1 sekret' as v`, 'select ? as v'],
    ['doubled quotes', `select 'it''s a sekret', '''sekret''', ''''`, 'select ?, ?, ?'],
    ['a doubled quote right after a backslash', `select 'a\\'' and 'sekret'`, 'select ?…'],
    ['U&, B, X and N strings', `select U&'sekret\\0061', b'1010', X'1F', n'sekret', U&"na""me"`, 'select ?, ?, ?, ?, U&"na""me"'],
    ['a dollar-quoted body', `do $$ begin perform 'sekret'; end $$; select 1`, 'do ?…'],
    ['a tagged dollar-quoted body with a nested quote', `create function f() returns text as $fn$ select $q$sekret$q$ $fn$ language sql`, 'create function f() returns text as ?…'],
    ['a dollar-quoted body left open', `select $body$ sekret`, 'select ?…'],
    ['a comment holding a quote', `select /* it's */ 'sekret' -- don't\n, 2`, 'select ? , ?'],
    ['nested block comments', `select /* a /* 'b' */ sekret */ 1`, 'select ?'],
    ['a block comment left open', `select 1 /* sekret`, 'select ? …'],
    ['a line comment at the end', `select 1 -- sekret`, 'select ?'],
    ['quoted names with quotes', `select "a""b", "it's" from "t" where "x" = 'sekret'`, `select "a""b", "it's" from "t" where "x" = ?`],
    ['a quoted name left open', `select "a""b from t where x = 'sekret'`, 'select …'],
    ['an unterminated standard string', `select 'sekret`, 'select ?'],
    ['an unterminated E-string ending in a backslash', `select E'sekret\\`, 'select ?'],
    ['a backslash outside a literal', `select 1 \\g sekret`, 'select ? …'],
    ['numbers of every shape', `select 0x1F, 1_000, 1e-5, .5, 3.`, 'select ?, ?, ?, ?, ?'],
    ['a typed literal', `select date '2024-01-01', interval 'sekret'`, 'select date ?, interval ?'],
    ['a string split over lines', `select 'sek'\n'ret'`, 'select ? ?'],
    ['names with dollars and digits', `select a$$b, col9 from t$1`, 'select a$$b, col9 from t$1'],
    ["the mover's epoch check before the statement it guards", `select kysely_scale.check_mover_epoch(7::bigint); delete from "orders" where "user_id" = 'sekret'`, 'delete from "orders" where "user_id" = ?'],
    ["the mover's epoch check after a begin", `begin; select kysely_scale.check_mover_epoch(7::bigint);\n update t set x = 'sekret'`, 'begin; update t set x = ?'],
    ["the mover's epoch check with its holder", `select kysely_scale.check_mover_epoch(7::bigint, '0b7c-holder'); delete from "orders" where "user_id" = 'sekret'`, 'delete from "orders" where "user_id" = ?'],
    ["the mover's epoch check alone", `begin; select kysely_scale.check_mover_epoch(7::bigint);`, 'begin; select kysely_scale.check_mover_epoch(?::bigint);'],
  ])('%s', (_what, sql, shown) => {
    const hidden = statementStart(sql);
    expect(hidden).toBe(shown);
    expect(hidden.toLowerCase()).not.toContain('sekret');
  });
});
