/**
 * The `onRoute` hook on a real cluster (two shards, each with a streaming replica): for every
 * statement it receives the plan and the servers that ran it, with their role and redacted URL,
 * the reads the primary answered for a failed replica, the duration on the injected clock and the
 * statement's error; a hook that throws never fails the statement.
 */
import { Kysely } from 'kysely';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import type { RouteEvent } from '../../../src/sharding/dialect/statement-telemetry';
import { ManualClock } from '../../../src/kernel/clock';
import { interceptingPool } from '../sharding/sharded-fixture';
import { waitForReplay } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string };
}

let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let topology: Topology;
const open: Kysely<DB>[] = [];
const dialects = new WeakMap<Kysely<DB>, ShardedDialect>();

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  shards = await cluster.createDatabase('route_hook');
  topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: s.replicaUrls })) });
  for (const s of shards) {
    const pool = directPool({ connectionString: s.primaryUrl });
    await pool.query('create table users (id integer primary key, name text not null)');
    await pool.end();
  }
  const db = connect({ onRoute: () => undefined });
  await db.insertInto('users').values(Array.from({ length: 20 }, (_, i) => ({ id: i + 1, name: `user ${i + 1}` }))).execute();
  for (const s of shards) await waitForReplay(s.primaryUrl, s.replicaUrls[0]!);
}, 90_000);

afterAll(async () => {
  await Promise.all(open.map((db) => db.destroy()));
  await cluster?.stop();
});

function connect(options: { onRoute: (event: RouteEvent) => void; clock?: ManualClock; failReplicaReads?: boolean; replicas?: boolean }): Kysely<DB> {
  const clock = options.clock;
  const replicaUrls = new Set(shards.flatMap((s) => s.replicaUrls));
  const dialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    defaultKeylessPolicy: 'scatter',
    onRoute: options.onRoute,
    ...(clock === undefined ? {} : { clock }),
    ...(options.replicas === true ? { replicas: { readFrom: 'replica' as const, lagCheckIntervalMillis: 0 } } : {}),
    createPool: (server) =>
      interceptingPool(server.url, (sql) => {
        if (!sql.includes('"users"')) return undefined;
        clock?.advance(3); // every statement on users takes 3 ms on the injected clock
        if (options.failReplicaReads === true && replicaUrls.has(server.url)) {
          return Object.assign(new Error('injected: Connection terminated unexpectedly'), { code: 'ECONNRESET' });
        }
        return undefined;
      }),
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  dialects.set(db, dialect);
  open.push(db);
  return db;
}

describe('onRoute', () => {
  it('receives a point read’s single plan, the primary that ran it and the duration on the injected clock', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e), clock: new ManualClock() });
    await db.selectFrom('users').select('name').where('id', '=', 7).executeTakeFirstOrThrow();
    const owner = topology.shardForKey(7);
    expect(events).toHaveLength(1);
    const [event] = events;
    expect(event!.plan).toMatchObject({ kind: 'single', statement: 'select', table: 'users', keys: [7] });
    expect(event!.servers).toEqual([{ shardId: owner.id, role: 'primary', redactedUrl: owner.primary.redactedUrl }]);
    expect(event!.primaryRetries).toBe(0);
    expect(event!.durationMillis).toBe(3);
    expect(event!.error).toBeUndefined();
  });

  it('receives a scatter with one server per shard', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e) });
    const { count } = await db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('count')).executeTakeFirstOrThrow();
    expect(Number(count)).toBe(20);
    expect(events.map((e) => e.plan.kind)).toEqual(['scatter']);
    expect(events[0]!.servers.map((s) => `${s.shardId}/${s.role}`).sort()).toEqual(shards.map((s) => `${s.id}/primary`).sort());
  });

  it('names the replica that answered a plain read', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e), replicas: true });
    await refresh(db);
    await db.selectFrom('users').select('name').where('id', '=', 3).executeTakeFirstOrThrow();
    const owner = topology.shardForKey(3);
    expect(events.at(-1)!.servers).toEqual([{ shardId: owner.id, role: 'replica', redactedUrl: owner.replicas[0]!.redactedUrl }]);
  });

  it('lists the replica then the primary, and counts the retry, when the replica fails the read', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e), replicas: true, failReplicaReads: true });
    await refresh(db);
    expect((await db.selectFrom('users').select('name').where('id', '=', 5).executeTakeFirstOrThrow()).name).toBe('user 5');
    const owner = topology.shardForKey(5);
    expect(events.at(-1)!.servers.map((s) => s.role)).toEqual(['replica', 'primary']);
    expect(events.at(-1)!.servers[1]!.redactedUrl).toBe(owner.primary.redactedUrl);
    expect(events.at(-1)!.primaryRetries).toBe(1);
  });

  it('names the primary for a statement inside a transaction', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e), replicas: true });
    await db.transaction().execute((trx) => trx.selectFrom('users').select('name').where('id', '=', 9).execute());
    const owner = topology.shardForKey(9);
    expect(events.filter((e) => e.plan.table === 'users').map((e) => e.servers)).toEqual([[{ shardId: owner.id, role: 'primary', redactedUrl: owner.primary.redactedUrl }]]);
  });

  it('passes a failed statement’s error, which still reaches the caller unchanged', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e) });
    const failure = await db.insertInto('users').values({ id: 1, name: 'again' }).execute().catch((e: unknown) => e);
    expect((failure as { code?: string }).code).toBe('23505');
    expect(events.at(-1)!.plan).toMatchObject({ kind: 'single', statement: 'insert' });
    expect(events.at(-1)!.error).toBe(failure);
  });

  it('observes a streamed scatter once it ends, with every shard', async () => {
    const events: RouteEvent[] = [];
    const db = connect({ onRoute: (e) => events.push(e) });
    let rows = 0;
    for await (const _row of db.selectFrom('users').select('id').orderBy('id').stream(4)) rows++;
    expect(rows).toBe(20);
    expect(events).toHaveLength(1);
    expect(events[0]!.servers).toHaveLength(2);
    expect(events[0]!.error).toBeUndefined();
  });

  it('gets a one-shard read’s table and keys although the dialect plans it without reading its tree (nothing else needs them)', async () => {
    const events: RouteEvent[] = [];
    const only = shards[0]!;
    const db = new Kysely<DB>({
      dialect: new ShardedDialect({ topology: createTopology({ shards: [{ id: only.id, primary: only.primaryUrl }] }), shardKeys: { users: 'id' }, onRoute: (e) => events.push(e) }),
    });
    open.push(db);
    await db.selectFrom('users').select('name').where('id', 'in', [2, 4]).execute();
    await db.selectFrom('users as u').select('u.name').execute();
    expect(events.map((e) => e.plan)).toMatchObject([
      { kind: 'single', statement: 'select', table: 'users', keys: [2, 4], shard: { id: only.id } },
      { kind: 'single', statement: 'select', table: 'users', keys: null },
    ]);
    // A hook that logs the plan as JSON sees the same fields as for any other plan.
    expect(JSON.parse(JSON.stringify(events[0]!.plan))).toMatchObject({ kind: 'single', statement: 'select', table: 'users', keys: [2, 4] });
  });

  it('turns a hook that throws into a process warning; the statement succeeds', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const db = connect({
        onRoute: () => {
          throw new Error('hook broke');
        },
      });
      expect((await db.selectFrom('users').select('name').where('id', '=', 2).executeTakeFirstOrThrow()).name).toBe('user 2');
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([expect.stringContaining('onRoute threw: hook broke')]);
    } finally {
      warn.mockRestore();
    }
  });
});

/** Measures the replicas now (the dialects here check them on demand: lagCheckIntervalMillis 0). */
async function refresh(db: Kysely<DB>): Promise<void> {
  await dialects.get(db)!.refreshReplicas();
}
