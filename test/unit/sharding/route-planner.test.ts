import { offlineKysely } from '../../support/offline-kysely';
import { PostgresQueryCompiler, sql, type RootOperationNode } from 'kysely';
import { createTopology } from '../../../src/cluster/topology';
import { planRoute, type RoutePlan } from '../../../src/sharding/routing/route-planner';
import * as queryAnalysis from '../../../src/sharding/routing/query-analysis';
import { resolveShardedConfig } from '../../../src/sharding/dialect/sharded-dialect-config';
import { ErrorCodes } from '../../../src/kernel/errors';
import { RoutingError } from '../../../src/sharding/sharding-errors';

const topology = createTopology({
  shards: [0, 1, 2].map((i) => ({ id: `shard${i}`, primary: `postgres://u@h${i}:5432/db` })),
});
const { rules } = resolveShardedConfig({
  topology,
  shardKeys: { orders: 'user_id', users: 'id', items: 'user_id', events: 'user_id' },
  keylessPolicy: { events: { read: 'scatter', write: 'scatter' }, items: 'scatter' },
  unshardedTables: ['countries'],
});
const db = offlineKysely();

const plan = (q: { toOperationNode(): unknown }): RoutePlan => planRoute(q.toOperationNode() as RootOperationNode, undefined, topology, rules);
const shardOf = (k: unknown) => topology.shardForKey(k).id;
// Keys of three different shards, found once.
const keysOn: string[][] = [[], [], []];
for (let k = 1; keysOn.some((l) => l.length < 3); k++) keysOn[topology.shardForKey(k).index]!.push(String(k));
const [a, b] = [Number(keysOn[0]![0]), Number(keysOn[1]![0])];

function routingError(fn: () => unknown): RoutingError {
  try {
    fn();
  } catch (error) {
    return error as RoutingError;
  }
  throw new Error('expected a routing error');
}

describe('route planner', () => {
  it('routes = on the key to the owning shard, through aliases, nested and/or parentheses', () => {
    const p = plan(db.selectFrom('orders as o').selectAll().where((eb) => eb.and([eb('o.status', '=', 'x'), eb.and([eb('o.user_id', '=', a)])])));
    expect(p).toMatchObject({ kind: 'single', shard: { id: shardOf(a) }, keys: [a] });
    expect(plan(db.selectFrom('orders').selectAll().where('user_id', '=', String(a)))).toMatchObject({ kind: 'single', shard: { id: shardOf(a) } });
  });

  it('routes a join of co-sharded tables on their keys by either table key', () => {
    const q = db.selectFrom('orders as o').innerJoin('users as u', 'u.id', 'o.user_id').selectAll().where('u.id', '=', b);
    expect(plan(q)).toMatchObject({ kind: 'single', shard: { id: shardOf(b) } });
  });

  it('refuses a join of sharded tables that is not on their keys', () => {
    const q = db.selectFrom('orders as o').innerJoin('users as u', 'u.id', 'o.other_id').selectAll().where('o.user_id', '=', a);
    expect(routingError(() => plan(q)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
  });

  it('splits an in-list over shards, each part with only its own keys', () => {
    const keys = [...keysOn[0]!, ...keysOn[2]!].map(Number);
    const p = plan(db.selectFrom('orders').selectAll().where('user_id', 'in', keys));
    expect(p.kind).toBe('split');
    if (p.kind !== 'split') return;
    expect(p.parts.map((x) => x.shard.id).sort()).toEqual(['shard0', 'shard2']);
    for (const part of p.parts) {
      const compiled = new PostgresQueryCompiler().compileQuery(part.node, { queryId: 'x' });
      expect(compiled.parameters.map((k) => shardOf(k))).toEqual(compiled.parameters.map(() => part.shard.id));
      expect(compiled.parameters).toHaveLength(3);
    }
  });

  it('splits a multi-row insert by row and remembers each row position', () => {
    const rows = [a, b, a].map((user_id, i) => ({ user_id, n: i }));
    const p = plan(db.insertInto('orders').values(rows));
    expect(p.kind).toBe('split');
    if (p.kind !== 'split') return;
    const byShard = Object.fromEntries(p.parts.map((x) => [x.shard.id, x.rowIndexes]));
    expect(byShard[shardOf(a)]).toEqual([0, 2]);
    expect(byShard[shardOf(b)]).toEqual([1]);
  });

  it('refuses an insert without the key column, or with a non-literal key', () => {
    expect(routingError(() => plan(db.insertInto('orders').values({ n: 1 }))).code).toBe(ErrorCodes.NO_SHARD_KEY);
    expect(routingError(() => plan(db.insertInto('orders').values({ user_id: sql`1 + 1` }))).message).toMatch(/expression/);
  });

  it('names the table and both fixes when a sharded query has no key', () => {
    const error = routingError(() => plan(db.selectFrom('orders').selectAll().where('status', '=', 'x')));
    expect(error.code).toBe(ErrorCodes.NO_SHARD_KEY);
    expect(error.message).toContain('"orders"');
    expect(error.message).toContain('user_id');
    expect(error.message).toContain('withShardKey');
    expect(error.message).toContain("scatter");
  });

  it('scatters keyless queries on tables whose policy is scatter', () => {
    expect(plan(db.selectFrom('events').selectAll())).toMatchObject({ kind: 'scatter' });
    expect(plan(db.deleteFrom('events').where('kind', '=', 'x'))).toMatchObject({ kind: 'scatter', statement: 'delete' });
    expect(plan(db.updateTable('events').set({ kind: 'y' }))).toMatchObject({ kind: 'scatter', statement: 'update' });
  });

  it('keyless writes need their own opt-in: the scatter policy lets reads run everywhere, not updates or deletes', () => {
    expect(plan(db.selectFrom('items').selectAll())).toMatchObject({ kind: 'scatter', statement: 'select' });
    for (const write of [db.updateTable('items').set({ qty: 0 }), db.deleteFrom('items').where('qty', '=', 0)]) {
      const error = routingError(() => plan(write));
      expect(error.code).toBe(ErrorCodes.NO_SHARD_KEY);
      expect(error.message).toMatch(/^Keyless (update|delete) of sharded table "items" names no shard key/);
      expect(error.message).toContain("keylessPolicy { items: { read: 'scatter', write: 'scatter' } }");
    }
    const orders = routingError(() => plan(db.deleteFrom('orders')));
    expect(orders.message).toContain("set keylessPolicy { orders: { read: 'scatter', write: 'scatter' } }");
  });

  it('with several shards, refuses tables declared neither sharded nor unsharded, naming the table and both fixes', () => {
    for (const query of [db.selectFrom('invoices').selectAll(), db.insertInto('invoices').values({ id: 1 }), db.selectFrom('countries').where('code', 'in', db.selectFrom('regions').select('code')).selectAll()]) {
      const error = routingError(() => plan(query));
      expect(error.code).toBe(ErrorCodes.UNROUTABLE_QUERY);
      expect(error.message).toMatch(/^Table "(invoices|regions)" is declared neither in shardKeys nor in unshardedTables; with 3 shards its rows would all stay on shard "shard0"/);
      expect(error.message).toMatch(/shardKeys: \{ (invoices|regions): '<key column>' \}.*unshardedTables: \['(invoices|regions)'\].*strictTables: false/);
    }
    // Declared (bare or schema-qualified), system catalogs, DDL and raw SQL pass.
    expect(plan(db.withSchema('public').selectFrom('countries').selectAll())).toMatchObject({ kind: 'single', shard: { id: 'shard0' } });
    expect(plan(db.selectFrom('pg_catalog.pg_class').select('relname'))).toMatchObject({ kind: 'single' });
    expect(plan(db.selectFrom('information_schema.tables').select('table_name'))).toMatchObject({ kind: 'single' });
    expect(plan(db.selectFrom('pg_tables').selectAll())).toMatchObject({ kind: 'single' });
    expect(plan(db.schema.createTable('invoices').addColumn('id', 'integer'))).toMatchObject({ kind: 'broadcast' });
    const lax = resolveShardedConfig({ topology, shardKeys: { orders: 'user_id' }, strictTables: false }).rules;
    expect(planRoute(db.selectFrom('invoices').selectAll().toOperationNode(), undefined, topology, lax)).toMatchObject({ kind: 'single', shard: { id: 'shard0' } });
    const one = createTopology({ shards: [{ id: 'only', primary: 'postgres://u@h/db' }] });
    const oneRules = resolveShardedConfig({ topology: one }).rules;
    expect(planRoute(db.selectFrom('invoices').selectAll().toOperationNode(), undefined, one, oneRules)).toMatchObject({ kind: 'single', shard: { id: 'only' } });
  });

  it('plans a one-shard SELECT lean (its tree unread) only when asked to and only without WITH; the details come back on read', () => {
    const one = createTopology({ shards: [{ id: 'only', primary: 'postgres://u@h/db' }] });
    const oneRules = resolveShardedConfig({ topology: one, shardKeys: { users: 'id' } }).rules;
    const node = db.selectFrom('users').select('id').where('id', '=', 5).toOperationNode();
    expect(planRoute(node, undefined, one, oneRules)).toMatchObject({ kind: 'single', table: 'users', keys: [5] });
    // Lean: the tree is not read until table or keys are, then once.
    const analyze = jest.spyOn(queryAnalysis, 'analyzeQuery');
    try {
      const lean = planRoute(node, undefined, one, oneRules, true);
      expect(lean).toMatchObject({ kind: 'single', statement: 'select', shard: one.shards[0] });
      expect(lean.nestedWrites).toBeUndefined();
      expect(analyze).not.toHaveBeenCalled();
      expect(lean).toMatchObject({ table: 'users', keys: [5] });
      expect(JSON.parse(JSON.stringify(lean))).toMatchObject({ kind: 'single', statement: 'select', table: 'users', keys: [5] });
      expect(analyze).toHaveBeenCalledTimes(1);
    } finally {
      analyze.mockRestore();
    }
    // Locks keep a read on the primary either way.
    expect(planRoute(db.selectFrom('users').selectAll().forUpdate().toOperationNode(), undefined, one, oneRules, true)).toMatchObject({ primaryOnly: true });
    // A WITH may hold a write (PostgreSQL allows it there only): analysed in full, its nested write found.
    const nested = db.with('d', (qb) => qb.deleteFrom('users').where('id', '=', 5).returning('id')).selectFrom('d').selectAll().toOperationNode();
    expect(planRoute(nested, undefined, one, oneRules, true)).toMatchObject({ kind: 'single', nestedWrites: [{ kind: 'delete', table: 'users' }] });
    // Other statements and several shards are planned in full whatever `lean` says.
    expect(planRoute(db.updateTable('users').set({ id: 5 }).where('id', '=', 5).toOperationNode(), undefined, one, oneRules, true)).toMatchObject({ table: 'users', keys: [5] });
    expect(planRoute(db.selectFrom('users').selectAll().where('id', '=', a).toOperationNode(), undefined, topology, rules, true)).toMatchObject({ table: 'users', keys: [a] });
  });

  it('sends unsharded tables to the unsharded shard and refuses to mix them with sharded ones', () => {
    expect(plan(db.selectFrom('countries').selectAll())).toMatchObject({ kind: 'single', shard: { id: 'shard0' } });
    const mixed = db.selectFrom('orders').innerJoin('countries', 'countries.code', 'orders.country').selectAll().where('orders.user_id', '=', a);
    expect(routingError(() => plan(mixed)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
  });

  it('requires subqueries on sharded tables to pin the same shard', () => {
    const same = db.selectFrom('orders').selectAll().where('user_id', '=', a)
      .where('id', 'in', db.selectFrom('items').select('order_id').where('user_id', '=', a));
    expect(plan(same)).toMatchObject({ kind: 'single', shard: { id: shardOf(a) } });
    const keyless = db.selectFrom('orders').selectAll().where('user_id', '=', a).where('id', 'in', db.selectFrom('items').select('order_id'));
    expect(routingError(() => plan(keyless)).code).toBe(ErrorCodes.NO_SHARD_KEY);
    const other = db.selectFrom('orders').selectAll().where('user_id', '=', a)
      .where('id', 'in', db.selectFrom('items').select('order_id').where('user_id', '=', b));
    expect(routingError(() => plan(other)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
  });

  it('finds a subquery on another shard wherever it sits in the statement', () => {
    // The analyzer reads common nodes field by field and enumerates the rest: each position must still be searched.
    const other = () => db.selectFrom('items').select('order_id').where('user_id', '=', b);
    const base = () => db.selectFrom('orders').where('user_id', '=', a);
    const positions = {
      selection: base().select((eb) => other().limit(1).as('x')),
      'where, right operand': base().selectAll().where('id', 'in', other()),
      'where, left operand': base().selectAll().where((eb) => eb(other().limit(1), '=', eb.ref('id'))),
      'where, under and/or/not': base().selectAll().where((eb) => eb.or([eb('id', '=', 1), eb.not(eb.exists(other()))])),
      'from, aliased': db.selectFrom([base().select('id').as('o'), other().as('i')]).selectAll(),
      'join target': base().innerJoin(other().as('i'), (j) => j.onTrue()).selectAll(),
      'order by': base().selectAll().orderBy((eb) => eb.exists(other())),
      'group by and having': base().select('id').groupBy('id').having((eb) => eb.exists(other())),
      'function argument': base().select((eb) => eb.fn.coalesce(other().limit(1), eb.val(0)).as('x')),
      'case expression': base().select((eb) => eb.case().when(eb.exists(other())).then(1).else(0).end().as('x')),
      limit: base().selectAll().limit(() => other().select((eb) => eb.fn.countAll<number>().as('c'))),
      offset: base().selectAll().offset(() => other().select((eb) => eb.fn.countAll<number>().as('c'))),
    };
    for (const [position, query] of Object.entries(positions)) {
      expect([position, routingError(() => plan(query)).code]).toEqual([position, ErrorCodes.UNROUTABLE_QUERY]);
    }
  });

  it('treats CTE names as query scopes, not tables', () => {
    const q = db.with('mine', (d) => d.selectFrom('orders').selectAll().where('user_id', '=', b)).selectFrom('mine').selectAll();
    expect(plan(q)).toMatchObject({ kind: 'single', shard: { id: shardOf(b) } });
  });

  it('broadcasts DDL and refuses raw SQL without a hint', () => {
    expect(plan(db.schema.createTable('t').addColumn('id', 'integer'))).toMatchObject({ kind: 'broadcast' });
    expect(routingError(() => planRoute(sql`select 1`.toOperationNode(), undefined, topology, rules)).code).toBe(ErrorCodes.NO_SHARD_KEY);
  });

  it('honours explicit targets and refuses a key hint that contradicts the query', () => {
    const node = db.selectFrom('orders').selectAll().toOperationNode();
    expect(planRoute(node, { kind: 'shard', shardId: 'shard2' }, topology, rules)).toMatchObject({ kind: 'single', shard: { id: 'shard2' } });
    expect(planRoute(node, { kind: 'key', key: b }, topology, rules)).toMatchObject({ kind: 'single', shard: { id: shardOf(b) } });
    const keyed = db.selectFrom('orders').selectAll().where('user_id', '=', a).toOperationNode();
    expect(routingError(() => planRoute(keyed, { kind: 'key', key: b }, topology, rules)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
    expect(routingError(() => planRoute(node, { kind: 'shard', shardId: 'nope' }, topology, rules)).code).toBe(ErrorCodes.UNKNOWN_SHARD);
  });
});

describe('route planner: rows never move shards, subqueries never see partial data', () => {
  it('refuses an update that moves a row to another shard, and allows one that keeps it on its shard', () => {
    const sameShard = Number(keysOn[0]![1]);
    expect(routingError(() => plan(db.updateTable('orders').set({ user_id: b }).where('user_id', '=', a))).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
    expect(routingError(() => plan(db.updateTable('orders').set({ user_id: sql`user_id + 1` }).where('user_id', '=', a))).message).toMatch(/expression/);
    expect(plan(db.updateTable('orders').set({ user_id: sameShard }).where('user_id', '=', a))).toMatchObject({ kind: 'single', shard: { id: shardOf(a) } });
    expect(routingError(() => plan(db.updateTable('events').set({ user_id: a }).where('kind', '=', 'x'))).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
  });

  it('refuses ON CONFLICT DO UPDATE that sets another key, and allows excluded.key', () => {
    const moving = db.insertInto('orders').values({ id: 1, user_id: a }).onConflict((oc) => oc.column('id').doUpdateSet({ user_id: b }));
    expect(routingError(() => plan(moving)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
    const keeping = db.insertInto('orders').values({ id: 1, user_id: a }).onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ user_id: eb.ref('excluded.user_id') })));
    expect(plan(keeping)).toMatchObject({ kind: 'single', shard: { id: shardOf(a) } });
  });

  it('checks the subqueries of inserts and of hinted statements', () => {
    const keyless = db.insertInto('orders').values((eb) => ({ user_id: a, amount: eb.selectFrom('orders').select((e) => e.fn.max('amount').as('m')).where('status', '=', 'x') }));
    expect(routingError(() => plan(keyless)).code).toBe(ErrorCodes.NO_SHARD_KEY);
    const elsewhere = db.insertInto('orders').values((eb) => ({ user_id: a, amount: eb.selectFrom('orders').select('amount').where('user_id', '=', b) }));
    expect(routingError(() => plan(elsewhere)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
    const hintedSelect = db.insertInto('orders').columns(['user_id']).expression(db.selectFrom('orders').select('user_id').where('user_id', '=', b)).toOperationNode();
    expect(routingError(() => planRoute(hintedSelect, { kind: 'key', key: a }, topology, rules)).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
  });

  it('scopes CTE names lexically: a CTE named like its table still routes by the key inside it', () => {
    const shadow = db.with('orders', (d) => d.selectFrom('orders').selectAll().where('user_id', '=', b)).selectFrom('orders').selectAll();
    expect(plan(shadow)).toMatchObject({ kind: 'single', shard: { id: shardOf(b) } });
    const sibling = db
      .selectFrom('users')
      .selectAll()
      .where('id', '=', a)
      .where(({ exists }) => exists(db.with('orders', (d) => d.selectNoFrom(sql<number>`1`.as('id'))).selectFrom('orders').select('id')))
      .where(({ exists }) => exists(db.selectFrom('orders').select('id').where('status', '=', 'x')));
    expect(routingError(() => plan(sibling)).code).toBe(ErrorCodes.NO_SHARD_KEY);
  });

  it('sends unsharded tables to their shard even under withShardKey', () => {
    const node = db.selectFrom('countries').selectAll().toOperationNode();
    expect(planRoute(node, { kind: 'key', key: b }, topology, rules)).toMatchObject({ kind: 'single', shard: { id: 'shard0' } });
  });

  it('marks data-modifying CTEs as writes', () => {
    const q = db.with('d', (d) => d.deleteFrom('orders').where('user_id', '=', a).returningAll()).selectFrom('d').selectAll();
    expect(plan(q)).toMatchObject({ kind: 'single', statement: 'select', nestedWrites: [{ kind: 'delete', table: 'orders' }] });
  });
});

describe('route planner: typed keys and schemas', () => {
  const typed = resolveShardedConfig({
    topology,
    shardKeys: { orders: { column: 'user_id', type: 'integer' }, sessions: { column: 'id', type: 'uuid' }, 'app.accounts': 'user_id' },
    unshardedTables: ['archive.orders'],
  }).rules;
  const typedPlan = (q: { toOperationNode(): unknown }) => planRoute(q.toOperationNode() as RootOperationNode, undefined, topology, typed);

  it('reads integer keys written as text as PostgreSQL does', () => {
    expect(typedPlan(db.selectFrom('orders').selectAll().where('user_id', '=', ` 0${a}`))).toMatchObject({ kind: 'single', shard: { id: shardOf(a) } });
    expect(typedPlan(db.insertInto('orders').values({ user_id: `+${b}` }))).toMatchObject({ kind: 'single', shard: { id: shardOf(b) } });
    expect(() => typedPlan(db.selectFrom('orders').selectAll().where('user_id', '=', '5x'))).toThrow(/not an integer/);
  });

  it('reads any UUID spelling as its canonical text', () => {
    const canonical = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
    for (const spelling of ['{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}', 'a0eebc999c0b4ef8bb6d6bb9bd380a11']) {
      expect(typedPlan(db.selectFrom('sessions').selectAll().where('id', '=', spelling))).toMatchObject({ shard: { id: shardOf(canonical) } });
    }
  });

  it('refuses an unqualified name that only a schema-qualified sharded table has, and keeps other schemas apart', () => {
    expect(routingError(() => typedPlan(db.selectFrom('accounts').selectAll().where('user_id', '=', a))).code).toBe(ErrorCodes.UNROUTABLE_QUERY);
    expect(typedPlan(db.withSchema('app').selectFrom('accounts').selectAll().where('user_id', '=', a))).toMatchObject({ shard: { id: shardOf(a) } });
    expect(typedPlan(db.withSchema('archive').selectFrom('orders').selectAll())).toMatchObject({ kind: 'single', shard: { id: 'shard0' } });
    expect(typedPlan(db.withSchema('public').selectFrom('orders').selectAll().where('user_id', '=', b))).toMatchObject({ shard: { id: shardOf(b) } });
  });
});

describe('route planner: keys that are not keys', () => {
  const invalid = (q: { toOperationNode(): unknown }): RoutingError => routingError(() => plan(q));

  it('refuses null and object keys with E_INVALID_SHARD_KEY, never as a keyless query or a scatter', () => {
    // events scatters keyless reads and writes: a null key must not turn into a scatter.
    const cases = [
      db.selectFrom('events').selectAll().where('user_id', '=', null),
      db.selectFrom('orders').selectAll().where('user_id', '=', null),
      db.selectFrom('events').selectAll().where('user_id', 'in', [a, null]),
      db.selectFrom('events').selectAll().where((eb) => eb('user_id', 'in', [eb.val(a), eb.val(null)])),
      db.selectFrom('events').selectAll().where('user_id', '=', new Date(0) as never),
      db.selectFrom('events').selectAll().where('user_id', '=', { id: 1 } as never),
      db.deleteFrom('events').where('user_id', '=', null),
      db.insertInto('orders').values({ user_id: null, amount: '1' }),
      db.insertInto('orders').values([{ user_id: a, amount: '1' }, { user_id: [1] as never, amount: '2' }]),
      db.updateTable('orders').set({ user_id: null }).where('user_id', '=', a),
    ];
    for (const query of cases) {
      const error = invalid(query);
      expect(error.code).toBe(ErrorCodes.INVALID_SHARD_KEY);
      expect(error.message).toMatch(/^Shard key for (events|orders)\.user_id is (null|a Date|of type object|an array), which is not a shard key/);
    }
  });

  it('refuses an oversized key before parsing it', () => {
    const typed = resolveShardedConfig({ topology, shardKeys: { orders: { column: 'user_id', type: 'integer' } } }).rules;
    const node = db.selectFrom('orders').selectAll().where('user_id', '=', '9'.repeat(1_000_000)).toOperationNode();
    // Reading it as an integer (BigInt of 1 MB of digits) is what the bound spares; watched, not timed.
    const parse = jest.spyOn(globalThis, 'BigInt');
    let error: RoutingError;
    try {
      error = routingError(() => planRoute(node, undefined, topology, typed));
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
    expect(error.code).toBe(ErrorCodes.INVALID_SHARD_KEY);
    expect(() => plan(db.selectFrom('orders').selectAll().where('user_id', '=', 'x'.repeat(2000)))).toThrow(/longer than 1024 bytes/);
  });
});
