import { Kysely, sql } from 'kysely';
import { directPool } from '../../support/direct-pool';
import { MoveStore } from '../../../src/admin/mover/move-store';
import { TOPOLOGY_CATALOG_DEFAULTS } from '../../../src/admin/topology-catalog';
import { startMoverFixture, SCHEMA_SQL, TABLES, type MoverFixture } from './mover-fixture';
import { addShard, drainShard, moveSlots } from '../../../src/admin/mover/mover-operations';
import { abortMove, moveHistory } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { ErrorCodes } from '../../../src/kernel/errors';
import { createTopology } from '../../../src/cluster/topology';
import { systemClock } from '../../../src/kernel/clock';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_refusals', 3);
  await f.init(2);
  await f.seed((await latest())!, 0, 100);
  // Registers the sharded tables (a refused move registers none).
  expect((await verifyShards({ catalog: f.catalogUrl, tables: TABLES })).ok).toBe(true);
}, 60_000);

afterAll(() => f?.close());

async function latest() {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  try {
    return await catalog.latest();
  } finally {
    await catalog.close();
  }
}

const base = () => ({ catalog: f.catalogUrl, tables: TABLES });

async function registeredTables() {
  const pool = directPool({ connectionString: f.catalogUrl, max: 1 });
  try {
    return await new MoveStore(pool, TOPOLOGY_CATALOG_DEFAULTS.schema).tables();
  } finally {
    await pool.end();
  }
}

describe('requests that cannot start are refused with a code before anything changes', () => {
  test('an unknown target shard', async () => {
    const result = await moveSlots({ ...base(), slots: '0-9', to: 'nope' });
    expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.MOVE_REFUSED, context: { reason: 'unknown-shard' } } });
    expect((await latest())!.version).toBe(1);
  });

  test('a tuning refused with new tables leaves the catalog\'s table list as it was; a nice ratio over 100 is refused', async () => {
    const result = await moveSlots({ ...base(), tables: { ...TABLES, not_registered: 'id' }, slots: '0-9', to: 'shard1', tuning: { niceRatio: -1 } });
    expect(result.error).toMatchObject({ code: ErrorCodes.INVALID_CONFIG, context: { option: 'tuning.niceRatio' } });
    const pool = directPool({ connectionString: f.catalogUrl, max: 1 });
    try {
      const names = (await new MoveStore(pool, TOPOLOGY_CATALOG_DEFAULTS.schema).tables()).map((t) => t.name);
      expect(names).not.toContain('not_registered');
    } finally {
      await pool.end();
    }
    const huge = await moveSlots({ ...base(), slots: '0-9', to: 'shard1', tuning: { niceRatio: 1e6 } });
    expect(huge).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option: 'tuning.niceRatio' } } });
    expect(huge.error!.message).toContain('at most 100');
  });

  test('a negative nice ratio', async () => {
    const result = await moveSlots({ ...base(), slots: '0-9', to: 'shard1', tuning: { niceRatio: -1 } });
    expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option: 'tuning.niceRatio' } } });
    for (const maxRowsPerSecond of [0, -5, Number.NaN]) {
      const throttle = await moveSlots({ ...base(), slots: '0-9', to: 'shard1', maxRowsPerSecond });
      expect(throttle).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option: 'maxRowsPerSecond' } } });
    }
    expect((await latest())!.version).toBe(1);
  });

  test('the operator lock is checked every lockHeartbeatMillis (2000 by default); 0, fractions and values past a timer\'s range are refused before anything changes', async () => {
    // The real clock, recording each wait it is asked for: the lock's heartbeat is one of them.
    const delaysOf = async (tuning: { lockHeartbeatMillis?: number }): Promise<number[]> => {
      const delays: number[] = [];
      const clock = { ...systemClock, setTimeout: (callback: () => void, millis: number) => (delays.push(millis), systemClock.setTimeout(callback, millis)) };
      const result = await moveSlots({ ...base(), slots: '0-9', to: 'shard1', dryRun: true, clock, tuning });
      expect(result).toMatchObject({ ok: true, status: 'planned' });
      return delays;
    };
    expect(await delaysOf({})).toContain(2000);
    const quick = await delaysOf({ lockHeartbeatMillis: 750 });
    expect(quick).toContain(750);
    expect(quick).not.toContain(2000);
    // 0, a fraction, and past a timer's longest delay (Node would fire it every millisecond: review 66).
    for (const lockHeartbeatMillis of [0, 1.5, 2 ** 31]) {
      const refused = await moveSlots({ ...base(), slots: '0-9', to: 'shard1', tuning: { lockHeartbeatMillis } });
      expect(refused).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option: 'tuning.lockHeartbeatMillis' } } });
    }
    expect((await latest())!.version).toBe(1);
  });

  test('a registered table given with another key column (a typo) is refused, even in a dry run, and its key stays', async () => {
    for (const dryRun of [true, false]) {
      const result = await moveSlots({ ...base(), tables: { ...TABLES, orders: 'amount' }, slots: '0-9', to: 'shard1', dryRun });
      expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option: 'tables.orders' } } });
      expect(result.error!.message).toContain('"user_id"');
    }
    expect(await registeredTables()).toEqual([
      { name: 'orders', keyColumn: 'user_id' },
      { name: 'users', keyColumn: 'id' },
    ]);
    expect((await latest())!.version).toBe(1);
  });

  test('another name of a registered table (schema-qualified), or a name no shard has (case differs), is refused before anything is registered or moved', async () => {
    for (const [tables, option, text] of [
      [{ 'public.orders': 'id' }, 'tables.public.orders', 'name the same table'],
      [{ 'public.orders': 'user_id' }, 'tables.public.orders', 'name the same table'],
      [{ Orders: 'user_id' }, 'tables.Orders', 'has no table "Orders"'],
    ] as const) {
      const result = await moveSlots({ catalog: f.catalogUrl, tables, slots: '19', to: 'shard1' });
      expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, error: { code: ErrorCodes.INVALID_CONFIG, context: { option } } });
      expect(result.error!.message).toContain(text);
    }
    expect((await registeredTables()).map((t) => t.name)).toEqual(['orders', 'users']);
    expect((await latest())!.version).toBe(1);
  });

  test('a dry run plans with a new table but does not register it', async () => {
    const result = await moveSlots({ ...base(), tables: { ...TABLES, countries: 'code' }, slots: '0-9', to: 'shard1', dryRun: true });
    expect(result).toMatchObject({ ok: true, dryRun: true, status: 'planned' });
    expect((await registeredTables()).map((t) => t.name)).toEqual(['orders', 'users']);
  });

  test('slots out of range', async () => {
    const result = await moveSlots({ ...base(), slots: '4000-4096', to: 'shard1' });
    expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'slot-range' } });
    expect(result.error!.message).toContain('0..4095');
  });

  test('an unreachable new shard', async () => {
    const result = await addShard({ ...base(), shard: { id: 'far', primary: 'postgres://postgres@127.0.0.1:1/nowhere' } });
    expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'unreachable' } });
    expect((await latest())!.shardById('far')).toBeUndefined();
  });

  test('a new shard whose schema differs, with a readable diff', async () => {
    await f.pools[2]!.query('alter table orders add column note text');
    try {
      const result = await addShard({ ...base(), shard: { id: 'shard2', primary: f.shards[2]!.primaryUrl } });
      expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'schema-mismatch' } });
      expect(result.error!.context.diff).toEqual(['+ shard2: orders column 4: note text']);
      expect((await latest())!.shardById('shard2')).toBeUndefined();
    } finally {
      await f.pools[2]!.query('alter table orders drop column note');
    }
  });

  test('draining the last shard', async () => {
    const catalog = new TopologyCatalog({ url: f.catalogUrl, schema: 'one_shard' });
    await catalog.install();
    await catalog.publish(createTopology({ shards: [{ id: 'shard0', primary: f.shards[0]!.primaryUrl }] }));
    await catalog.close();
    const result = await drainShard({ catalog: f.catalogUrl, schema: 'one_shard', tables: TABLES, shardId: 'shard0' });
    expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'last-shard' } });
  });

  test('a second move while one is open, until the first is aborted', async () => {
    const first = await moveSlots({
      ...base(),
      slots: '0-99',
      to: 'shard1',
      hook: (_batch, point) => {
        if (point === 'copied') throw new Error('stop here');
      },
    });
    expect(first).toMatchObject({ ok: false, status: 'open', error: { message: 'stop here' } });
    const second = await moveSlots({ ...base(), slots: '100-199', to: 'shard1' });
    expect(second.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'overlap', moveId: first.moveId } });
    const aborted = await abortMove(base());
    expect(aborted).toMatchObject({ ok: true, status: 'aborted', rolledBack: 1, completed: 0 });
    const history = await moveHistory({ catalog: f.catalogUrl });
    expect(history.moves[0]).toMatchObject({ id: first.moveId, status: 'aborted', batches: [{ phase: 'aborted' }] });
    // The abort left no copy on the target and no guard state behind.
    expect((await f.pools[1]!.query('select hidden from kysely_scale.shard_guard')).rows[0].hidden).toBeNull();
    expect((await f.pools[0]!.query('select count(*)::int as n from kysely_scale.slot_move')).rows[0].n).toBe(0);
    expect((await latest())!.version).toBe(1);
  });
});

describe('add with the shards\' migrations', () => {
  test('a failing migration refuses the add; the migrations bring a bare new shard to the schema and it gets an equal share', async () => {
    await f.pools[2]!.query('drop table users, orders, countries');
    const broken = { getMigrations: async () => ({ '001_schema': { up: async (db: Kysely<unknown>) => void (await sql`create table users (`.execute(db)) } }) };
    const refused = await addShard({ ...base(), shard: { id: 'shard2', primary: f.shards[2]!.primaryUrl }, migrations: { provider: broken } });
    expect(refused.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'migration-failed' } });
    expect((await latest())!.shardById('shard2')).toBeUndefined();

    const schema = { getMigrations: async () => ({ '001_schema': { up: async (db: Kysely<unknown>) => void (await sql.raw(SCHEMA_SQL).execute(db)) } }) };
    // A dry run neither runs the migrations nor registers the shard; its plan says they would run first.
    const tables = async (): Promise<string[]> => (await f.pools[2]!.query<{ t: string }>(`select tablename as t from pg_tables where schemaname = 'public' order by 1`)).rows.map((r) => r.t);
    const before = await tables();
    const dry = await addShard({ ...base(), dryRun: true, shard: { id: 'shard2', primary: f.shards[2]!.primaryUrl }, migrations: { provider: schema, migrationTableName: 'shard_migrations' } });
    expect(dry).toMatchObject({ ok: true, status: 'planned', plan: { migrationsPending: 'shard2', slots: 1365 } });
    expect(await tables()).toEqual(before);
    expect(before).not.toContain('shard_migrations');
    expect((await latest())!.shardById('shard2')).toBeUndefined();
    const added = await addShard({ ...base(), shard: { id: 'shard2', primary: f.shards[2]!.primaryUrl }, migrations: { provider: schema, migrationTableName: 'shard_migrations' } });
    expect(added.error).toBeNull();
    const topology = (await latest())!;
    expect(topology.slotsOf('shard2')).toHaveLength(1365);
    const rows = Number((await f.pools[2]!.query('select count(*) as n from users')).rows[0].n);
    expect(rows).toBeGreaterThan(0);
    expect((await f.pools[2]!.query('select count(*)::int as n from shard_migrations')).rows[0].n).toBe(1);
    // Adding under an id the topology has, with another URL, is refused: that URL was never reached.
    const other = await addShard({ ...base(), shard: { id: 'shard2', primary: 'postgres://postgres:Secret1@127.0.0.1:1/elsewhere' }, slots: '0-9' });
    expect(other.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'shard-exists', shardId: 'shard2' } });
    expect(JSON.stringify(other)).not.toContain('Secret1');
    expect((await latest())!.slotsOf('shard2')).toHaveLength(1365);
  });
});

test('an unreachable catalog is a coded refusal naming it (password hidden) and saying what to check', async () => {
  const closed = 'postgres://mover:s3cret-pw@127.0.0.1:1/catalog';
  for (const result of [await moveSlots({ catalog: closed, tables: TABLES, slots: '0-9', to: 'shard1' }), await verifyShards({ catalog: closed, tables: TABLES })]) {
    expect(result.ok).toBe(false);
    expect(result.error).toMatchObject({ code: 'E_MOVE_REFUSED', context: { reason: 'catalog-unreachable' } });
    expect(result.error!.message).toMatch(/cannot be reached .*check --catalog and that its server is up/);
    expect(JSON.stringify(result)).not.toContain('s3cret-pw');
  }
});
