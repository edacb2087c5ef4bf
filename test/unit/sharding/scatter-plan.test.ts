import { offlineKysely } from '../../support/offline-kysely';
import { createQueryId, PostgresQueryCompiler, sql, type SelectQueryNode } from 'kysely';
import { RoutingError } from '../../../src/sharding/sharding-errors';
import { planScatter, type ScatterPlan } from '../../../src/sharding/scatter/scatter-plan';
import type { TypeLookup } from '../../../src/sharding/scatter/scatter-compare';
import { FieldTypes, fieldPositions } from '../../../src/sharding/scatter/scatter-field-types';

const db = offlineKysely();
const compiler = new PostgresQueryCompiler();
const shardSql = (plan: ScatterPlan): string => compiler.compileQuery(plan.shardNode, createQueryId()).sql;
const plan = (query: { toOperationNode(): SelectQueryNode }): ScatterPlan => planScatter(query.toOperationNode());
/** The types the shards' row descriptions would give the plan's type fields. */
const typed = (names: Record<number, string>): TypeLookup => ({
  fieldType: (field) => names[field] ?? fail(`no type for field ${field}`),
  enumLabels: () => undefined,
});
const fail = (what: string): never => {
  throw new Error(what);
};

describe('ordered rows', () => {
  test('LIMIT n OFFSET m runs as LIMIT n+m with text columns (types from the row description), and merges in order without helpers', () => {
    const p = plan(db.selectFrom('t').select(['id', 'name']).orderBy('big', 'desc').orderBy('name').limit(2).offset(1));
    expect(shardSql(p)).toBe(
      'select "id", "name", ("big")::text as "__ks_x0", "big" as "__ks_v1", ("name")::text as "__ks_x2" from "t" order by "big" desc, "name" limit $1',
    );
    expect(compiler.compileQuery(p.shardNode, createQueryId()).parameters).toEqual([3]);
    // "big" is not selected: its hidden copy (hidden field 1) gives its type; "name" is visible field 1.
    expect(p.typeFields).toEqual([-2, 1]);
    const row = (id: number, name: string, big: string | null) => ({ id, name, __ks_x0: big, __ks_v1: big, __ks_x2: name });
    const merged = p.merge(
      [
        [row(1, 'a', null), row(2, 'b', '10'), row(3, 'a', '9')],
        [row(4, 'a', '100'), row(5, 'c', '10'), row(6, 'a', '-5')],
      ],
      typed({ [-2]: 'bigint', 1: 'text' }),
    );
    // DESC puts NULLs first; bigint strings compare as numbers; ties on big break on name.
    expect(merged).toEqual([{ id: 4, name: 'a' }, { id: 2, name: 'b' }]);
  });

  test('nulls first/last in both directions, several columns', () => {
    const p = plan(db.selectFrom('t').select(['a', 'b']).orderBy('a', (o) => o.asc().nullsFirst()).orderBy('b', (o) => o.desc().nullsLast()));
    const r = (a: number | null, b: string | null) => ({ a, b, __ks_x0: a === null ? null : String(a), __ks_x1: b });
    const merged = p.merge([[r(null, 'x'), r(1, 'b'), r(1, null)], [r(null, null), r(0, 'z'), r(1, 'c')]], typed({ 0: 'integer', 1: 'text' }));
    expect(merged.map((m) => [m.a, m.b])).toEqual([[null, 'x'], [null, null], [0, 'z'], [1, 'c'], [1, 'b'], [1, null]]);
  });

  test('ORDER BY an output alias uses the column, a qualified name adds a hidden column', () => {
    expect(shardSql(plan(db.selectFrom('t').select('x as y').orderBy('y')))).toBe('select "x" as "y", ("x")::text as "__ks_x0" from "t" order by "y"');
    // After a `*` no visible field has a known position: the type comes from a hidden copy.
    expect(shardSql(plan(db.selectFrom('t').selectAll().orderBy('t.x')))).toBe('select *, ("t"."x")::text as "__ks_x0", "t"."x" as "__ks_v1" from "t" order by "t"."x"');
  });

  test('numeric strings, text in C order and without ORDER BY plain concatenation with limit', () => {
    const p = plan(db.selectFrom('t').select('n').orderBy('n'));
    const r = (n: string) => ({ n, __ks_x0: n });
    expect(p.merge([[r('-1.5'), r('2')], [r('-10'), r('10.00')]], typed({ 0: 'numeric' })).map((x) => x.n)).toEqual(['-10', '-1.5', '2', '10.00']);
    const q = plan(db.selectFrom('t').select('id').limit(3));
    expect(q.merge([[{ id: 1 }, { id: 2 }], [{ id: 3 }, { id: 4 }]])).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });

  test('a shard whose order disagrees with the comparator (e.g. a non-C collation) fails instead of misordering', () => {
    const p = plan(db.selectFrom('t').select('s').orderBy('s'));
    const r = (s: string) => ({ s, __ks_x0: s });
    const types = typed({ 0: 'text' });
    expect(() => p.merge([[r('b'), r('a')], [r('c')]], types)).toThrow(/shard #0 returned rows in an order/);
    expect(() => p.merge([[r('b'), r('a')], [r('c')]], types)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER', context: { unsupported: 'order mismatch', shardIndex: 0 } }));
    // A matching compareText (here: case-insensitive) is accepted.
    const ci = planScatter(db.selectFrom('t').select('s').orderBy('s').toOperationNode(), { compareText: (a, b) => a.toLowerCase().localeCompare(b.toLowerCase()) });
    expect(ci.merge([[r('a'), r('B')], [r('A2')]], types).map((x) => x.s)).toEqual(['a', 'A2', 'B']);
  });
});

describe('aggregates', () => {
  test('count/sum/min/max/avg without GROUP BY merge to PostgreSQL types and text', () => {
    const p = plan(
      db.selectFrom('t').select((eb) => [
        eb.fn.countAll().as('n'),
        eb.fn.count('x').as('nx'),
        eb.fn.sum('x').as('s'),
        eb.fn.min('name').as('lo'),
        eb.fn.max('big').as('hi'),
        eb.fn.avg('x').as('a'),
      ]).orderBy('n').limit(5),
    );
    expect(shardSql(p)).toBe(
      'select count(*) as "n", count("x") as "nx", sum("x") as "s", min("name") as "lo", max("big") as "hi", ' +
        '(sum("x"))::text as "__ks_x0", (min("name"))::text as "__ks_x1", (max("big"))::text as "__ks_x2", ' +
        'sum("x") as "__ks_s3", count("x") as "__ks_c4", (sum("x"))::text as "__ks_x5" from "t"',
    );
    // sum, min and max are visible fields 2-4; avg's partial sum is hidden field 3 (its own column gives its type).
    expect(p.typeFields).toEqual([2, 3, 4, -4]);
    const rows = [
      [{ n: '3', nx: '2', s: '1.50', lo: 'b', hi: '9', __ks_x0: '1.50', __ks_x1: 'b', __ks_x2: '9', __ks_s3: '1.50', __ks_c4: '2', __ks_x5: '1.50' }],
      [{ n: '2', nx: '2', s: '2.25', lo: 'B', hi: '10', __ks_x0: '2.25', __ks_x1: 'B', __ks_x2: '10', __ks_s3: '2.25', __ks_c4: '2', __ks_x5: '2.25' }],
      [{ n: '0', nx: '0', s: null, lo: null, hi: null, __ks_x0: null, __ks_x1: null, __ks_x2: null, __ks_s3: null, __ks_c4: '0', __ks_x5: null }],
    ];
    const names = { 2: 'numeric', 3: 'text', 4: 'bigint', [-4]: 'numeric' };
    expect(p.merge(rows, typed(names))).toEqual([{ n: '5', nx: '4', s: '3.75', lo: 'B', hi: '10', a: '0.93750000000000000000' }]);
    // With the app's parsers known, sum and avg are handed to them from their exact text.
    const parsed: string[] = [];
    const withParsers: TypeLookup = { ...typed(names), parse: (typeName, text) => (parsed.push(`${typeName} ${text}`), `parsed ${text}`) };
    expect(p.merge(rows, withParsers)).toEqual([{ n: '5', nx: '4', s: 'parsed 3.75', lo: 'B', hi: '10', a: 'parsed 0.93750000000000000000' }]);
    expect(parsed).toEqual(['numeric 3.75', 'numeric 0.93750000000000000000']);
  });

  test('a parser that loses digits loses them once, as on one database: partial sums are added from their text', () => {
    const p = plan(db.selectFrom('t').select((eb) => [eb.fn.sum('x').as('s'), eb.fn.avg('x').as('a')]));
    const lossy: TypeLookup = { ...typed({ 0: 'numeric', [-2]: 'numeric' }), parse: (_typeName, text) => Number(text) };
    // The shards' values as a Number parser gave them: 0.1 + 0.2 added as floats is 0.30000000000000004.
    const row = (sum: string) => ({ s: Number(sum), __ks_x0: sum, __ks_s1: Number(sum), __ks_c2: '1', __ks_x3: sum });
    expect(p.merge([[row('0.1')], [row('0.2')]], lossy)).toEqual([{ s: 0.3, a: 0.15 }]);
    expect(p.merge([[row('0.1')], [row('0.2')]], typed({ 0: 'numeric', [-2]: 'numeric' }))).toEqual([{ s: 0.30000000000000004, a: 0.15000000000000002 }]);
  });

  test('over no rows: count is 0 and the others null', () => {
    const p = plan(db.selectFrom('t').select((eb) => [eb.fn.countAll().as('n'), eb.fn.sum('x').as('s'), eb.fn.avg('x').as('a')]));
    const none = { n: '0', s: null, __ks_x0: null, __ks_s1: null, __ks_c2: '0', __ks_x3: null };
    expect(p.merge([[none], [none]])).toEqual([{ n: '0', s: null, a: null }]);
    expect(p.merge([])).toEqual([{ n: '0', s: null, a: null }]);
  });

  test('avg over partial counts that add up below zero is refused, not divided', () => {
    const p = plan(db.selectFrom('t').select((eb) => eb.fn.avg('x').as('a')));
    expect(() => p.merge([[{ __ks_s0: '4', __ks_c1: '-2', __ks_x2: '4' }]])).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER', context: { unsupported: "the shards' counts for avg() add up to -2" } }));
  });

  test('floats and app-parsed bigints keep their JS form', () => {
    const p = plan(db.selectFrom('t').select((eb) => [eb.fn.sum('f').as('s'), eb.fn.avg('f').as('a'), eb.fn.countAll().as('n')]));
    const merged = p.merge([[{ s: 1.5, __ks_x0: '1.5', __ks_s1: 1.5, __ks_c2: 1n, __ks_x3: '1.5', n: 1n }], [{ s: 2.5, __ks_x0: '2.5', __ks_s1: 2.5, __ks_c2: 3n, __ks_x3: '2.5', n: 3n }]]);
    expect(merged).toEqual([{ s: 4, a: 1, n: 4n }]);
  });

  test('GROUP BY merges groups by typed key (numeric 1.0 = 1.00), sorts and limits after merging', () => {
    const p = plan(db.selectFrom('t').select((eb) => ['k', eb.fn.countAll().as('n')]).groupBy('k').orderBy('n', 'desc').orderBy('k').limit(2).offset(1));
    expect(shardSql(p)).toBe('select "k", count(*) as "n", ("k")::text as "__ks_x0" from "t" group by "k"');
    const r = (k: string | null, n: string) => ({ k, n, __ks_x0: k });
    const merged = p.merge(
      [
        [r('1.0', '2'), r('2', '5'), r(null, '1')],
        [r('1.00', '4'), r('3', '1'), r(null, '1')],
      ],
      typed({ 0: 'numeric' }),
    );
    expect(merged).toEqual([{ k: '2', n: '5' }, { k: null, n: '2' }]);
  });

  test('GROUP BY t.k matches a selected k on one table', () => {
    expect(() => plan(db.selectFrom('t').select((eb) => ['t.k', eb.fn.countAll().as('n')]).groupBy('k'))).not.toThrow();
  });
});

describe('DISTINCT', () => {
  test('removes duplicates across shards and applies offset/limit after', () => {
    const p = plan(db.selectFrom('t').select(['g']).distinct().orderBy('g').limit(2).offset(1));
    // No LIMIT on the shards: with its text selected, one distinct value may be several rows.
    expect(shardSql(p)).toBe('select distinct "g", ("g")::text as "__ks_x0" from "t" order by "g"');
    const r = (g: string) => ({ g, __ks_x0: g });
    expect(p.merge([[r('a'), r('b'), r('c')], [r('a'), r('c')]], typed({ 0: 'text' }))).toEqual([{ g: 'b' }, { g: 'c' }]);
    expect(p.streamable).toBe(false);
  });
});

describe('refusals', () => {
  const refused: [string, () => unknown][] = [
    ['HAVING', () => db.selectFrom('t').select((eb) => ['k', eb.fn.countAll().as('n')]).groupBy('k').having((eb) => eb.fn.countAll(), '>', 1)],
    ['window function', () => db.selectFrom('t').select((eb) => eb.fn.countAll().over().as('n'))],
    ['DISTINCT ON', () => db.selectFrom('t').select('a').distinctOn('a')],
    ['set operation', () => db.selectFrom('t').select('a').union(db.selectFrom('u').select('a'))],
    ['ORDER BY expression that is not in the select list', () => db.selectFrom('t').select((eb) => ['k', eb.fn.countAll().as('n')]).groupBy('k').orderBy('other')],
    ['aggregate inside the expression', () => db.selectFrom('t').select((eb) => eb(eb.fn.countAll(), '+', 1).as('n'))],
    ['count(DISTINCT', () => db.selectFrom('t').select((eb) => eb.fn.count('a').distinct().as('n'))],
    ['join', () => db.selectFrom('t').innerJoin('u', 'u.id', 't.id').select('t.a')],
    ['subquery', () => db.selectFrom('t').select('a').where('a', 'in', db.selectFrom('u').select('a'))],
    ['raw SQL', () => db.selectFrom('t').select(sql<number>`count(*)`.as('n'))],
    ['WITH', () => db.with('c', (q) => q.selectFrom('u').select('a')).selectFrom('t').select('a')],
    ['aggregate string_agg', () => db.selectFrom('t').select((eb) => eb.fn.agg('string_agg', ['a', sql.lit(',')]).as('s'))],
    ['GROUP BY expression that is not in the select list', () => db.selectFrom('t').select((eb) => eb.fn.countAll().as('n')).groupBy('k')],
    ['select * in an aggregate query', () => db.selectFrom('t').selectAll().groupBy('id')],
    ['LIMIT', () => db.selectFrom('t').select('a').limit(sql<number>`1`)],
    ['COLLATE', () => db.selectFrom('t').select('a').orderBy('a', (o) => o.collate('en_US'))],
    ['several FROM items', () => db.selectFrom(['t', 'u']).select('t.a')],
    ['FROM that is not one table', () => db.selectFrom(db.selectFrom('t').select('a').as('s')).select('s.a')],
    ['reserved', () => db.selectFrom('t').select('a as __ks_x')],
    ['ORDER BY on raw SQL', () => db.selectFrom('t').select('a').orderBy(sql`lower(a)`)],
    ['plain function', () => db.selectFrom('t').select((eb) => eb.fn('sum', ['a']).as('s'))],
    ['DISTINCT over *', () => db.selectFrom('t').selectAll().distinct()],
  ];
  test.each(refused)('%s', (what, build) => {
    const node = (build() as { toOperationNode(): SelectQueryNode }).toOperationNode();
    let error: unknown;
    try {
      planScatter(node);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RoutingError);
    expect((error as RoutingError).code).toBe('E_UNSUPPORTED_SCATTER');
    expect((error as Error).message).toContain(what);
    expect((error as Error).message).toMatch(/shard key.*withShard/);
    // The context names the refused construct the message names, at its top level.
    const { unsupported } = (error as RoutingError).context;
    expect(typeof unsupported === 'string' && unsupported !== '').toBe(true);
    expect((error as Error).message).toContain(unsupported);
    expect(Object.keys((error as RoutingError).context)).toEqual(['unsupported']);
  });

  test('a join the router vouches for is planned', () => {
    const node = db.selectFrom('t').innerJoin('u', 'u.id', 't.id').select(['t.a']).orderBy('t.a').toOperationNode();
    expect(() => planScatter(node, { isJoinSafe: () => true })).not.toThrow();
  });

  test('plans are frozen', () => {
    const p = plan(db.selectFrom('t').select('a').orderBy('a'));
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.shardNode)).toBe(true);
  });
});

describe('types from the row description', () => {
  test('a plan finds its type fields from the start (visible) or among the hidden columns that come last', () => {
    const p = plan(db.selectFrom('t').select(['id', 'name']).orderBy('big').orderBy('name'));
    expect(p.fields).toEqual({ visible: 2, hidden: 3 });
    expect(fieldPositions(p.fields, p.typeFields, 5)).toEqual([3, 1]);
    const star = plan(db.selectFrom('t').selectAll().orderBy('id'));
    expect(star.fields).toEqual({ visible: undefined, hidden: 2 });
    expect(fieldPositions(star.fields, star.typeFields, 7)).toEqual([6]);
  });

  test('raw SQL among the selections (`sql`t.*``, `sql`a, b``) may be several fields: types come from hidden copies, counted from the end', () => {
    const p = plan(db.selectFrom('t').select(sql<number>`a, b`.as('x')).orderBy('x'));
    expect(p.fields.visible).toBeUndefined();
    expect(fieldPositions(p.fields, p.typeFields, 4)).toEqual([3]);
    const star = plan(db.selectFrom('t').select(sql`t.*` as never).orderBy('t.id'));
    expect(star.fields.visible).toBeUndefined();
  });

  test('a row description with other fields than the plan names is refused, not read at the wrong positions', () => {
    const p = plan(db.selectFrom('t').select(['a', 'b']).orderBy('a'));
    expect(() => fieldPositions(p.fields, p.typeFields, 5)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
  });

  test('shards that give one compared field two types are refused; a field no shard described cannot be compared', () => {
    const types = new FieldTypes();
    types.add('s0', [0], ['integer'], new Map());
    types.add('s1', [0], ['integer'], new Map());
    expect(() => types.add('s2', [0], ['bigint'], new Map())).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER', message: expect.stringMatching(/integer on shard "s0" and bigint on shard "s2"/) }));
    expect(() => types.fieldType(1)).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
  });
});
