/**
 * The scatter statement cache: a statement seen before gets its shard statement from the cache,
 * and that statement (SQL and every parameter) must equal what planning and compiling the new
 * statement from scratch gives, whatever its values.
 */
import { offlineKysely } from '../../support/offline-kysely';
import { PostgresQueryCompiler, sql, type Compilable } from 'kysely';
import { ScatterStatements } from '../../../src/sharding/dialect/scatter-statements';
import { planScatter } from '../../../src/sharding/scatter/scatter-plan';
import { allOfType } from '../../support/scatter-types';

const db = offlineKysely();
const OPTIONS = { isJoinSafe: () => true };

/** Planned and compiled from scratch, no cache. */
function fresh(query: Compilable) {
  const compiled = query.compile();
  const shard = new PostgresQueryCompiler().compileQuery(planScatter(compiled.query, OPTIONS).shardNode, compiled.queryId);
  return { sql: shard.sql, parameters: shard.parameters };
}

/** Each shape, built with several sets of values: the first call fills the cache, the others read it. */
const SHAPES: Readonly<Record<string, (v: number) => Compilable>> = {
  'ORDER BY + LIMIT, values in WHERE': (v) => db.selectFrom('t').select(['id', 'at']).where('id', '>', v).where('name', '=', `n${v}`).orderBy('at', 'desc').orderBy('id').limit(20),
  'ORDER BY an expression with a value (copied into the hidden columns)': (v) =>
    db.selectFrom('t').select(['id', sql<number>`coalesce(score, ${v})`.as('s')]).where('grp', '=', `g${v}`).orderBy('s').limit(5),
  'ORDER BY an unselected expression with values': (v) => db.selectFrom('t').select('id').where('id', '>', v + 1).orderBy((eb) => eb('score', '*', v)).limit(3).offset(1),
  'IN list': (v) => db.selectFrom('t').select('id').where('grp', 'in', [`a${v}`, `b${v}`, `c${v}`]).orderBy('id').limit(7),
  'LIMIT and OFFSET': (v) => db.selectFrom('t').select('id').where('id', '<', v).orderBy('id').limit(10).offset(30),
  'GROUP BY with aggregates and a value': (v) =>
    db.selectFrom('t').select((eb) => ['grp', eb.fn.countAll().as('n'), eb.fn.avg('score').as('mean'), eb.fn.max('at').as('last')]).where('score', '>', v).groupBy('grp').orderBy('grp').limit(2),
  DISTINCT: (v) => db.selectFrom('t').select('grp').distinct().where('id', '!=', v).orderBy('grp').limit(4),
  'no ORDER BY': (v) => db.selectFrom('t').selectAll().where('id', '=', v),
};

test.each(Object.entries(SHAPES))('%s: the cached shard statement equals a fresh plan for other values', (_name, shape) => {
  const statements = new ScatterStatements(OPTIONS);
  for (const v of [1, 2, 17, -3]) {
    const compiled = shape(v).compile();
    const { shard } = statements.statementFor(compiled);
    expect({ sql: shard.sql, parameters: shard.parameters }).toEqual(fresh(shape(v)));
    expect(shard.queryId).toBe(compiled.queryId);
  }
});

test('a new LIMIT or OFFSET value is planned again (the shard runs LIMIT n+m)', () => {
  const statements = new ScatterStatements(OPTIONS);
  const query = (limit: number, offset: number) => db.selectFrom('t').select('id').orderBy('id').limit(limit).offset(offset);
  for (const [limit, offset] of [[5, 0], [10, 0], [10, 5], [5, 0]] as const) {
    const { shard, plan } = statements.statementFor(query(limit, offset).compile());
    expect(shard.parameters).toEqual([limit + offset]);
    const row = (id: number) => ({ id, __ks_x0: String(id) });
    const rows = Array.from({ length: 40 }, (_, i) => row(i));
    expect(plan.merge([rows], allOfType('integer')).map((r) => r.id)).toEqual(rows.slice(offset, offset + limit).map((r) => r.id));
  }
});

test('a cache hit skips planning: the plan object is reused', () => {
  const statements = new ScatterStatements(OPTIONS);
  const a = statements.statementFor(SHAPES['IN list']!(1).compile());
  const b = statements.statementFor(SHAPES['IN list']!(2).compile());
  // The first call's plan is remembered without its values: the same merge, another shard node.
  expect(b.plan.merge).toBe(a.plan.merge);
  expect(statements.statementFor(SHAPES['IN list']!(3).compile()).plan).toBe(b.plan);
  // A list of another length is another SQL text, so another plan.
  const c = statements.statementFor(db.selectFrom('t').select('id').where('grp', 'in', ['x']).orderBy('id').limit(7).compile());
  expect(c.plan).not.toBe(a.plan);
});

test('a remembered statement keeps none of the values it was first planned with', () => {
  const statements = new ScatterStatements(OPTIONS);
  const query = (secret: string) => db.selectFrom('t').select('id').where('token', '=', secret).where('grp', 'in', [secret, `${secret}2`]).orderBy('id').limit(3);
  statements.statementFor(query('first-secret').compile());
  const { plan, shard } = statements.statementFor(query('second').compile());
  expect(shard.parameters).toEqual(['second', 'second', 'second2', 3]);
  const retained = new PostgresQueryCompiler().compileQuery(plan.shardNode, shard.queryId);
  expect(retained.sql).toBe(shard.sql);
  expect(JSON.stringify([retained.parameters, shard.query])).not.toContain('first-secret');
});

test('a refused statement stays refused on every call', () => {
  const statements = new ScatterStatements(OPTIONS);
  const query = () => db.selectFrom('t').select('grp').groupBy('grp').having('grp', '=', 'x').compile();
  expect(() => statements.statementFor(query())).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
  expect(() => statements.statementFor(query())).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED_SCATTER' }));
});

test('a value node used twice in the first statement is not traced by node: a later statement with two values gets both', () => {
  const statements = new ScatterStatements(OPTIONS);
  const shared = sql<number>`${10}`;
  statements.statementFor(db.selectFrom('t').select('id').where('id', '>=', shared).where('id', '<=', shared).orderBy('id').limit(5).compile());
  const later = () => db.selectFrom('t').select('id').where('id', '>=', sql<number>`${5}`).where('id', '<=', sql<number>`${20}`).orderBy('id').limit(5);
  const { shard } = statements.statementFor(later().compile());
  expect({ sql: shard.sql, parameters: shard.parameters }).toEqual(fresh(later()));
  expect(shard.parameters).toEqual([5, 20, 5]);
});

test('an ORDER BY expression that equals a selection only by its values is ordered by itself, whichever values came first', () => {
  const statements = new ScatterStatements(OPTIONS);
  const query = (a: number, b: number) =>
    db
      .selectFrom('t')
      .select((eb) => eb('score', '*', a).as('y'))
      .orderBy((eb) => eb('score', '*', b))
      .limit(2);
  for (const [a, b] of [[1, 1], [1, -1], [2, 2]] as const) {
    const { shard, plan } = statements.statementFor(query(a, b).compile());
    expect({ sql: shard.sql, parameters: shard.parameters }).toEqual(fresh(query(a, b)));
    // Shards send rows ordered by score * b; the merge must order by that, not by y.
    const rows = (scores: number[]) => scores.map((score) => ({ y: score * a, ...Object.fromEntries(shardColumns(shard.sql, score * b)) }));
    const ascending = b > 0;
    const one = rows(ascending ? [1, 4] : [4, 1]);
    const two = rows(ascending ? [2, 3] : [3, 2]);
    expect(plan.merge([one, two], allOfType('integer')).map((r) => r.y)).toEqual(ascending ? [1 * a, 2 * a] : [4 * a, 3 * a]);
  }
});

test('an aggregate ORDER BY that repeats a selection with bind parameters is refused on every call (order by its alias)', () => {
  const statements = new ScatterStatements(OPTIONS);
  const query = (a: number, b: number) =>
    db
      .selectFrom('t')
      .select((eb) => ['grp', eb.fn.sum(eb('score', '*', a)).as('s')])
      .groupBy('grp')
      .orderBy((eb) => eb.fn.sum(eb('score', '*', b)));
  for (const [a, b] of [[1, 1], [1, -1]] as const) expect(() => statements.statementFor(query(a, b).compile())).toThrow(/not in the select list/);
});

/** The hidden merge columns of a shard statement for an integer order value `v` (its text, or a copy of it). */
function shardColumns(shardSql: string, v: number): [string, unknown][] {
  const names = [...shardSql.matchAll(/"(__ks_[a-z]\d+)"/g)].map((m) => m[1]!);
  return names.map((name) => [name, String(v)]);
}
