/**
 * The query walk finds every nested query, wherever Kysely puts it: for each statement of a broad
 * corpus, the queries the walk reports equal those found by reflection over every field of every
 * node. A node field that a newer Kysely adds, and the walk does not visit, fails here.
 */
import { sql, type OperationNode, type RootOperationNode } from 'kysely';
import { walkNode, walkQueryChildren, type QueryNode, type QueryWalker } from '../../../src/sharding/routing/query-walk';
import { offlineKysely } from '../../support/offline-kysely';

const db = offlineKysely();
const QUERY_KINDS: ReadonlySet<string> = new Set(['SelectQueryNode', 'InsertQueryNode', 'UpdateQueryNode', 'DeleteQueryNode']);

function isNode(value: unknown): value is OperationNode {
  return typeof value === 'object' && value !== null && typeof (value as { kind?: unknown }).kind === 'string';
}

/** Every query node below `root` (root excluded), found by reflection over every field. */
function queriesByReflection(root: OperationNode): Set<OperationNode> {
  const found = new Set<OperationNode>();
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (!isNode(value)) return;
    if (QUERY_KINDS.has(value.kind)) found.add(value);
    for (const child of Object.values(value)) visit(child);
  };
  for (const child of Object.values(root)) visit(child);
  return found;
}

/** Every query node the walk reports below `root`, entering each reported query as the analysis does (WITH bodies, then the rest). */
function queriesByWalk(root: OperationNode): Set<OperationNode> {
  const found = new Set<OperationNode>();
  const walker: QueryWalker = {
    scope(node) {
      if (found.has(node)) return;
      found.add(node);
      for (const cte of node.with?.expressions ?? []) walkNode(cte.expression, walker);
      walkQueryChildren(node, walker);
    },
  };
  walkNode(root, walker);
  found.delete(root);
  return found;
}

const sub = () => db.selectFrom('items').select('order_id').where('user_id', '=', 1);
const one = () => sub().limit(1);
const base = () => db.selectFrom('orders').where('user_id', '=', 2);

const corpus: Record<string, { toOperationNode(): OperationNode }> = {
  'select list': base().select(() => one().as('x')),
  'where, both operands, under and/or/not and parentheses': base().selectAll().where((eb) =>
    eb.or([eb(one(), '=', eb.ref('id')), eb.and([eb.not(eb.exists(sub())), eb.parens('id', 'in', sub())])]),
  ),
  'from items and joins, lateral included': db
    .selectFrom([base().select('id').as('o'), sub().as('i')])
    .innerJoin(sub().as('j'), (j) => j.onTrue())
    .innerJoinLateral((eb) => eb.selectFrom('items').select('order_id').as('l'), (j) => j.on((eb) => eb.exists(sub())))
    .selectAll(),
  'group by, having, order by, limit, offset': base()
    .select('id')
    .groupBy((eb) => eb.fn.coalesce(one(), eb.val(0)))
    .having((eb) => eb.exists(sub()))
    .orderBy((eb) => eb.exists(sub()))
    .limit(() => sub().select((eb) => eb.fn.countAll<number>().as('c')))
    .offset(() => sub().select((eb) => eb.fn.countAll<number>().as('c'))),
  'function, aggregate filter and order, cast, case, tuple': base().select((eb) => [
    eb.fn.coalesce(one(), eb.val(0)).as('f'),
    eb.fn.count('id').filterWhere((f) => f.exists(sub())).as('n'),
    eb.fn.agg<string>('string_agg', ['status', eb.val(',')]).orderBy((o) => o.exists(sub()).$castTo<boolean>()).as('s'),
    eb.cast(one(), 'integer').as('c'),
    eb.case().when(eb.exists(sub())).then(1).else(one()).end().as('k'),
    eb(eb.refTuple('id', 'user_id'), 'in', db.selectFrom('items').select(['order_id', 'user_id'])).as('t'),
  ]),
  'raw SQL parameters and raw modifiers': base()
    .selectAll()
    .where(sql<boolean>`exists (${sub()})`)
    .modifyEnd(sql`for update of ${sql.raw('orders')} -- ${one()}`),
  'set operations': base().select('id').union(sub().select('order_id as id')).unionAll(sub().select('order_id as id')),
  'CTEs, recursive and data-modifying': db
    .withRecursive('r(n)', (w) => w.selectNoFrom(sql<number>`1`.as('n')).unionAll(w.selectFrom('r').select(sql<number>`n + 1`.as('n'))))
    .with('d', (w) => w.deleteFrom('orders').where('user_id', '=', 3).returning('id'))
    .selectFrom('r')
    .selectAll(),
  'insert … select, values with subqueries, on conflict, returning': db
    .insertInto('orders')
    .values({ user_id: 1, id: one(), status: 'a' })
    .onConflict((oc) => oc.column('id').where((eb) => eb.exists(sub())).doUpdateSet({ status: () => one() }).where((eb) => eb.exists(sub())))
    .returning(() => one().as('r')),
  'insert from a select': db.insertInto('orders').columns(['user_id', 'id']).expression(db.selectFrom('items').select(['user_id', 'order_id'])),
  'update set, from, where, returning': db
    .updateTable('orders')
    .set({ status: () => one() })
    .from(sub().as('s'))
    .where((eb) => eb.exists(sub()))
    .returning(() => one().as('r')),
  'delete using, where, returning': db
    .deleteFrom('orders')
    .using(sub().as('s'))
    .where('id', 'in', sub())
    .returning(() => one().as('r')),
  'merge using a subquery, when matched then update with a subquery': db
    .mergeInto('orders')
    .using(sub().as('s'), 's.order_id', 'orders.id')
    .whenMatchedAnd((eb) => eb.exists(sub()))
    .thenUpdateSet({ status: () => one() }),
  'create view as select': db.schema.createView('v').as(base().selectAll()),
  'create table as select': db.schema.createTable('t').as(base().selectAll()),
  'create index with a predicate': db.schema.createIndex('i').on('orders').column('id').where(sql.ref('id'), 'in', sql`(${sub()})`),
  'column default and check': db.schema
    .createTable('t')
    .addColumn('a', 'integer', (c) => c.defaultTo(sql`(${one()})`).check(sql`a in (${sub()})`))
    .addColumn('b', 'integer', (c) => c.generatedAlwaysAs(sql`(${one()})`).stored()),
  'alter column default': db.schema.alterTable('orders').alterColumn('status', (c) => c.setDefault(sql`(${one()})`)),
};

describe('query walk', () => {
  it.each(Object.entries(corpus))('reports every nested query: %s', (_name, query) => {
    const root = query.toOperationNode() as RootOperationNode;
    const expected = queriesByReflection(root);
    expect(expected.size).toBeGreaterThan(0);
    const reported = queriesByWalk(root);
    const missing = [...expected].filter((q) => !reported.has(q));
    expect(missing).toEqual([]);
    expect(reported.size).toBe(expected.size);
  });

  it('reports a nested query as a scope without entering it', () => {
    const inner = sub();
    const middle = db.selectFrom('users').select('id').where('id', 'in', inner);
    const root = base().selectAll().where('id', 'in', middle).toOperationNode() as QueryNode;
    const reported: OperationNode[] = [];
    walkQueryChildren(root, { scope: (node) => reported.push(node) });
    expect(reported.map((q) => q.kind)).toEqual(['SelectQueryNode']);
    expect(queriesByReflection(reported[0]!).size).toBe(1); // the inner one, left to that scope's own walk
  });

  it('leaves a query’s WITH to the analysis, which gives each CTE body its own visible names', () => {
    const root = db.with('c', () => sub()).selectFrom('c').selectAll().toOperationNode() as QueryNode;
    const reported: OperationNode[] = [];
    walkQueryChildren(root, { scope: (node) => reported.push(node) });
    expect(reported).toEqual([]);
    expect(queriesByReflection(root).size).toBe(1);
  });
});
