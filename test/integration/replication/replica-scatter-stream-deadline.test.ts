/**
 * The read deadline covers scatter reads and streams too, on real servers: two shards, each a
 * primary with two streaming replicas, one replica frozen with SIGSTOP (or its backend terminated).
 *
 * - Scatter reads (count(*), ORDER BY … LIMIT, and the enum-label lookup of an ORDER BY over an
 *   enum) complete with the right rows, none slower than the deadline plus one retry, and the frozen
 *   replica leaves rotation at the first deadline.
 * - A single-shard stream and a multi-shard ordered stream that start on the frozen replica start
 *   again elsewhere before their first row: every row exactly once.
 * - A stream whose replica freezes (or drops the connection) after its first chunk fails with
 *   E_REPLICA_STREAM_INTERRUPTED within the deadline, and the connection keeps working.
 *
 * A custom balancer strategy (a real `Strategy`, not a mock) makes reads start on the replica the
 * test freezes. Prints the figures.
 */
import { Kysely, sql } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { withShard } from '../../../src/sharding/routing/route-hint';
import { ErrorCodes } from '../../../src/kernel/errors';
import { ReplicaStreamInterruptedError } from '../../../src/replication/replication-errors';
import type { Strategy } from '../../../src/balancer/balancer-strategy';
import type { BalancedInstance } from '../../../src/balancer/balancer-instance';
import type { ReplicaEvent } from '../../../src/replication/replica-events';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { freeze, until } from './replication-fault-fixture';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string; mood: string };
}

// Short, so the file stays fast; a plain read on this loaded 2-core machine still answers well within it.
const READ_TIMEOUT = 1000;
const ROWS = 1000;
const MOODS = ['happy', 'sad', 'ok'] as const;
let cluster: TestCluster;
let shards: TestShardUrls[];
let topology: Topology;
const open: Kysely<DB>[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 2 });
  shards = [...(await cluster.createDatabase('replica_scatter_stream'))];
  topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: s.replicaUrls })) });
  for (const shard of shards) {
    const pool = directPool({ connectionString: shard.primaryUrl });
    await pool.query(`create type mood as enum ('sad', 'ok', 'happy')`);
    await pool.query('create table users (id integer primary key, name text not null, mood mood not null)');
    await pool.end();
  }
  const writer = new Kysely<DB>({ dialect: new ShardedDialect({ topology, shardKeys: { users: 'id' } }) });
  await writer.insertInto('users').values(Array.from({ length: ROWS }, (_, i) => ({ id: i + 1, name: `user ${i + 1}`, mood: MOODS[i % 3]! }))).execute();
  await writer.destroy();
  for (const shard of shards) for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
}, 60_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

/** The replica of shard 0 the tests freeze, and its name in events and statuses. */
const frozen = () => ({ server: cluster.shards[0]!.replicas[1]!, name: topology.shards[0]!.replicas[1]!.redactedUrl });

/** A strategy that picks the replica named `name` whenever it is eligible, else the first candidate. */
function preferring(name: string): Strategy {
  return { name: 'preferring', pick: (candidates) => candidates.find((c) => c.id === name) ?? candidates[0] };
}

/** A strategy that takes each candidate in turn, counted per set of candidates (so per shard). */
function inTurnPerShard(): Strategy {
  const turns = new Map<string, number>();
  return {
    name: 'in-turn-per-shard',
    pick(candidates): BalancedInstance {
      const key = candidates.map((c) => c.id).join(' ');
      const turn = turns.get(key) ?? 0;
      turns.set(key, turn + 1);
      return candidates[turn % candidates.length]!;
    },
  };
}

async function connect(strategy: Strategy) {
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    keylessPolicy: { users: 'scatter' },
    replicas: { readFrom: 'replica', strategy, readTimeoutMillis: READ_TIMEOUT, lagCheckIntervalMillis: 250, checkTimeoutMillis: 1000 },
    onPoolError: () => undefined,
  });
  const events: (ReplicaEvent & { at: number })[] = [];
  dialect.onReplicaEvent((event) => events.push({ ...event, at: performance.now() }));
  const db = new Kysely<DB>({ dialect });
  open.push(db);
  await until('every replica serving', () => dialect.replicaStatus().length === 4 && dialect.replicaStatus().every((s) => s.eligible));
  const ejections = () => events.filter((e) => e.server === frozen().name && e.to === 'ejected');
  return { db, dialect, ejections };
}

/** `promise`, or a failure naming `what` once `millis` passed (the old code waited forever on a frozen replica). */
function within<T>(millis: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${millis} ms`)), millis);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; millis: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, millis: performance.now() - started };
}

/** The ids of shard `index` in id order, read from its primary. */
async function idsOn(index: number): Promise<number[]> {
  return withPg(shards[index]!.primaryUrl, async (c) => (await c.query<{ id: number }>('select id from users order by id')).rows.map((r) => r.id));
}

const ALL_IDS = Array.from({ length: ROWS }, (_, i) => i + 1);
const round = (ms: number) => Math.round(ms);

test('scatter reads with a frozen replica: all complete and correct within the deadline plus one retry; the replica leaves rotation at the first deadline', async () => {
  const { db, dialect, ejections } = await connect(preferring(frozen().name));
  const count = () => db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  const top = () => db.selectFrom('users').select(['id', 'name']).orderBy('id', 'desc').limit(5).execute();
  const reads = () => Promise.all(Array.from({ length: 4 }, () => [timed(count), timed(top)]).flat());
  const thaw = freeze(frozen().server);
  try {
    const frozenAt = performance.now();
    // Every shard-0 part starts on the frozen replica (the strategy prefers it).
    const first = await within(4 * READ_TIMEOUT, 'scatter reads on a frozen replica', reads());
    const after = await reads();
    const ejected = ejections();
    const figures = {
      firstRoundMaxMillis: round(Math.max(...first.map((r) => r.millis))),
      firstRoundMinMillis: round(Math.min(...first.map((r) => r.millis))),
      afterEjectionMaxMillis: round(Math.max(...after.map((r) => r.millis))),
      ejectedAfterMillis: round(ejected[0]!.at - frozenAt),
    };
    console.log(`scatter reads, one replica of shard 0 frozen, readTimeoutMillis ${READ_TIMEOUT}: ${JSON.stringify(figures)}`);
    for (const { value } of [...first, ...after]) {
      if ('n' in value) expect(Number(value.n)).toBe(ROWS);
      else expect(value).toEqual([1000, 999, 998, 997, 996].map((id) => ({ id, name: `user ${id}` })));
    }
    // The first round waited for the deadline (it did start on the frozen replica), and no longer than one retry after it.
    expect(figures.firstRoundMinMillis).toBeGreaterThanOrEqual(READ_TIMEOUT - 5);
    expect(figures.firstRoundMaxMillis).toBeLessThan(2 * READ_TIMEOUT);
    // Out of rotation at the first deadline, once: later reads never wait for it.
    expect(ejected).toHaveLength(1);
    expect(ejected[0]!.reason).toContain(`readTimeoutMillis (${READ_TIMEOUT} ms)`);
    expect(figures.ejectedAfterMillis).toBeLessThan(READ_TIMEOUT + 500);
    expect(figures.afterEjectionMaxMillis).toBeLessThan(READ_TIMEOUT);
    expect(dialect.replicaStatus().find((s) => s.server === frozen().name)?.eligible).toBe(false);
  } finally {
    thaw();
  }
}, 30_000);

test("a scatter's enum-label lookup on a frozen replica runs again elsewhere within the deadline", async () => {
  // In turn per shard: shard 0's part reads its first replica, the lookup that follows the frozen second one.
  const { db, ejections } = await connect(inTurnPerShard());
  const thaw = freeze(frozen().server);
  try {
    const { value, millis } = await timed(() => within(4 * READ_TIMEOUT, 'enum lookup on a frozen replica', db.selectFrom('users').select(['id', 'mood']).orderBy('mood').orderBy('id').limit(3).execute()));
    console.log(`scatter ORDER BY an enum, its label lookup on the frozen replica: ${round(millis)} ms`);
    // sad < ok < happy (the enum's order, not the text's); id 2 is the first 'sad'.
    expect(value).toEqual([2, 5, 8].map((id) => ({ id, mood: 'sad' })));
    expect(millis).toBeLessThan(2 * READ_TIMEOUT);
    expect(ejections()).toHaveLength(1);
  } finally {
    thaw();
  }
}, 30_000);

/** Every row `rows` yields, by id; or the error it failed with. */
async function drain(rows: AsyncIterator<{ id: number }>, into: number[]): Promise<unknown> {
  try {
    for (let next = await rows.next(); next.done !== true; next = await rows.next()) into.push(next.value.id);
    return undefined;
  } catch (error) {
    return error;
  }
}

test('a single-shard stream that starts on a frozen replica starts again elsewhere before its first row: every row exactly once', async () => {
  const shard0 = await idsOn(0);
  const { db, ejections } = await connect(preferring(frozen().name));
  const thaw = freeze(frozen().server);
  try {
    const ids: number[] = [];
    const { value: error, millis } = await timed(() => within(4 * READ_TIMEOUT, 'a single-shard stream on a frozen replica', drain(db.withPlugin(withShard(shards[0]!.id)).selectFrom('users').select('id').orderBy('id').stream(50)[Symbol.asyncIterator](), ids)));
    console.log(`single-shard stream started on the frozen replica: ${shard0.length} rows in ${round(millis)} ms`);
    expect(error).toBeUndefined();
    expect(ids).toEqual(shard0);
    expect(millis).toBeLessThan(2 * READ_TIMEOUT);
    expect(ejections()).toHaveLength(1);
    expect(ejections()[0]!.reason).toContain(`readTimeoutMillis (${READ_TIMEOUT} ms)`);
  } finally {
    thaw();
  }
}, 30_000);

test('a multi-shard ordered stream whose shard-0 part starts on a frozen replica starts that part again elsewhere: every row exactly once, in order', async () => {
  const { db, ejections } = await connect(preferring(frozen().name));
  const thaw = freeze(frozen().server);
  try {
    const ids: number[] = [];
    const { value: error, millis } = await timed(() => within(4 * READ_TIMEOUT, 'a multi-shard stream on a frozen replica', drain(db.selectFrom('users').select('id').orderBy('id').stream(100)[Symbol.asyncIterator](), ids)));
    console.log(`multi-shard ordered stream, one part started on the frozen replica: ${ids.length} rows in ${round(millis)} ms`);
    expect(error).toBeUndefined();
    expect(ids).toEqual(ALL_IDS);
    expect(millis).toBeLessThan(2 * READ_TIMEOUT);
    expect(ejections()).toHaveLength(1);
  } finally {
    thaw();
  }
}, 30_000);

test('a stream whose replica freezes after its first chunk fails with E_REPLICA_STREAM_INTERRUPTED within the deadline; the connection keeps working', async () => {
  const shard0 = await idsOn(0);
  const { db, ejections } = await connect(preferring(frozen().name));
  let thaw = (): void => undefined;
  try {
    await db.connection().execute(async (conn) => {
      const onShard0 = conn.withPlugin(withShard(shards[0]!.id));
      const rows = onShard0.selectFrom('users').select('id').orderBy('id').stream(50)[Symbol.asyncIterator]();
      const seen = [(await rows.next()).value.id as number]; // the first chunk (50 rows) came from the preferred replica
      thaw = freeze(frozen().server);
      const frozenAt = performance.now();
      const error = await within(4 * READ_TIMEOUT, 'a stream on a replica frozen mid-way', drain(rows, seen));
      const failedAfter = performance.now() - frozenAt;
      console.log(`stream interrupted by SIGSTOP after its first chunk: failed ${round(failedAfter)} ms after the freeze`);
      expect(error).toBeInstanceOf(ReplicaStreamInterruptedError);
      expect(error).toMatchObject({ code: ErrorCodes.REPLICA_STREAM_INTERRUPTED, retryable: true, context: { shardId: shards[0]!.id, server: frozen().name, rowsHandedOver: 50 } });
      expect((error as Error).message).toContain(`readTimeoutMillis (${READ_TIMEOUT} ms)`);
      expect((error as Error).message).toContain('withPrimary()');
      // What was handed over is exactly the first chunk: nothing repeated, nothing skipped.
      expect(seen).toEqual(shard0.slice(0, 50));
      // The deadline plus a loaded machine's timer and event-loop delay (1,579 ms seen in a full CI run;
      // ~1,005 ms alone); without the deadline the stream never fails (the 4x bound above).
      expect(failedAfter).toBeLessThan(READ_TIMEOUT + 1000);
      expect(ejections()).toHaveLength(1);
      // The same connection reads and streams again, elsewhere.
      expect(await conn.selectFrom('users').select('name').where('id', '=', 1).executeTakeFirst()).toEqual({ name: 'user 1' });
      const again: number[] = [];
      expect(await within(2 * READ_TIMEOUT, 'the stream again', drain(onShard0.selectFrom('users').select('id').orderBy('id').stream(50)[Symbol.asyncIterator](), again))).toBeUndefined();
      expect(again).toEqual(shard0);
    });
  } finally {
    thaw();
  }
}, 30_000);

test('a stream whose replica drops its connection after the first chunk fails the same way, at once', async () => {
  const { db, ejections } = await connect(preferring(frozen().name));
  const rows = db
    .withPlugin(withShard(shards[0]!.id))
    .selectFrom('users')
    .select(['id', sql<string>`'end this backend'`.as('marker')])
    .orderBy('id')
    .stream(50)
    [Symbol.asyncIterator]();
  const seen = [(await rows.next()).value.id as number];
  const ended = await withPg(shards[0]!.replicaUrls[1]!, (c) => c.query(`select pg_terminate_backend(pid) from pg_stat_activity where query like '%end this backend%' and pid <> pg_backend_pid()`));
  expect(ended.rowCount).toBe(1);
  const { value: error, millis } = await timed(() => within(4 * READ_TIMEOUT, 'a stream whose backend was terminated', drain(rows, seen)));
  console.log(`stream whose replica backend was terminated after its first chunk: failed in ${round(millis)} ms`);
  expect(error).toBeInstanceOf(ReplicaStreamInterruptedError);
  expect(error).toMatchObject({ code: ErrorCodes.REPLICA_STREAM_INTERRUPTED, context: { rowsHandedOver: 50 } });
  expect(seen).toHaveLength(50);
  expect(millis).toBeLessThan(READ_TIMEOUT);
  expect(ejections()).toHaveLength(1);
  expect(await db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).toEqual({ n: String(ROWS) });
}, 30_000);

test('a stream on a primary whose backend is terminated mid-way fails at once with the driver error (closing its cursor used to wait forever)', async () => {
  const db = new Kysely<DB>({ dialect: new ShardedDialect({ topology, shardKeys: { users: 'id' }, onPoolError: () => undefined }) });
  open.push(db);
  const rows = db
    .withPlugin(withShard(shards[0]!.id))
    .selectFrom('users')
    .select(['id', sql<string>`'end this primary backend'`.as('marker')])
    .orderBy('id')
    .stream(50)
    [Symbol.asyncIterator]();
  const seen = [(await rows.next()).value.id as number];
  const ended = await withPg(shards[0]!.primaryUrl, (c) => c.query(`select pg_terminate_backend(pid) from pg_stat_activity where query like '%end this primary backend%' and pid <> pg_backend_pid()`));
  expect(ended.rowCount).toBe(1);
  const { value: error, millis } = await timed(() => within(4 * READ_TIMEOUT, 'a primary stream whose backend was terminated', drain(rows, seen)));
  expect(error).toMatchObject({ code: '57P01' });
  expect(seen).toHaveLength(50);
  expect(millis).toBeLessThan(READ_TIMEOUT);
  // The broken client did not go back to the pool: the next statement works.
  expect(await db.withPlugin(withShard(shards[0]!.id)).selectFrom('users').select('name').where('id', '=', seen[0]!).executeTakeFirst()).toEqual({ name: `user ${seen[0]}` });
}, 30_000);
