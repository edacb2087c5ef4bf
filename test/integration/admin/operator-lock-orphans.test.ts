/**
 * The operator lock's orphans (review 63): a lock session dropped after it asked for the lock may
 * live on at the server holding it (only the path went silent). Before, only a session lost while
 * the command ran was remembered, by pid alone: a remembered pid that the server later gave to
 * another operator's lock session got that live session ended (every kysely-scale catalog has the
 * same role and application name), and a lock whose unlock, or whose request's answer, was lost
 * stayed held by a process nobody remembered: the same catalog's next command got E_OPERATOR_BUSY
 * naming its own orphan, for up to TCP keepalive's two hours. Now a lock session's server process
 * is known by pid and start time, read before the lock is asked for, and every lock session
 * dropped after asking is ended when its command ends.
 */
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';
import { withPassword } from './admin-cli-process';
import type { Pool } from 'pg';
import { holdOperatorLock, type ServerProcess } from '../../../src/admin/operator-lock';
import { CatalogPool, catalogDeadlines } from '../../../src/admin/catalog-connections';
import { OperatorBusyError } from '../../../src/admin/admin-errors';
import { ManualClock, systemClock } from '../../../src/kernel/clock';

let cluster: TestCluster;
let catalogUrl: string;
let direct: Pool;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = (await cluster.createDatabase('operator_lock_orphans')) as [TestShardUrls];
  catalogUrl = withPassword(shard.primaryUrl);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(createTopology({ shards: [{ id: 'shard0', primary: shard.primaryUrl }] }), 'init');
  await catalog.close();
  direct = directPool({ connectionString: catalogUrl, max: 2 });
}, 60_000);

afterAll(async () => {
  await direct?.end();
  await cluster?.stop();
});

interface Conn { client: Socket; upstream: Socket; dark: boolean }

async function proxy(targetPort: number) {
  const state = { refuse: false, darkOn: undefined as { text: string; passFirst: boolean } | undefined };
  const conns = new Set<Conn>();
  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (state.refuse) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    upstream.on('error', () => undefined);
    const c: Conn = { client, upstream, dark: false };
    conns.add(c);
    client.on('data', (chunk: Buffer) => {
      const on = state.darkOn;
      if (on !== undefined && chunk.includes(on.text)) {
        state.darkOn = undefined;
        if (on.passFirst) upstream.write(chunk);
        c.dark = true;
        return;
      }
      if (!c.dark) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!c.dark) client.write(chunk);
    });
    client.on('close', () => {
      if (!c.dark) upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    state,
    via: (url: string) => {
      const u = new URL(url);
      u.host = `127.0.0.1:${port}`;
      return u.toString();
    },
    close: async () => {
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function lockHolder(): Promise<number | undefined> {
  const { rows } = await direct.query<{ pid: number }>(`select pid from pg_locks where locktype = 'advisory' and granted`);
  return rows[0]?.pid;
}

/** A lock site on the catalog whose remembered orphans the test sets. */
function siteWith(pool: CatalogPool, orphans: ServerProcess[]) {
  return {
    pool,
    key: 'kysely_scale_operator kysely_scale',
    applicationName: 'kysely-scale catalog',
    heartbeatIntervalMillis: 10_000,
    statementTimeoutMillis: 1000,
    clock: systemClock,
    orphans: new Map(orphans.map((o) => [o.key, o])),
  };
}

test('a remembered orphan is ended only if it is that very server process: a pid now used by another operator\'s lock session is left alone', async () => {
  const pool = new CatalogPool(catalogUrl, catalogDeadlines({}), 'kysely-scale catalog');
  const b = new TopologyCatalog({ url: catalogUrl }); // another operator
  try {
    await b.withOperatorLock(async (lostB) => {
      const { rows } = await direct.query<{ pid: number; started: string }>(
        `select a.pid, (extract(epoch from a.backend_start) * 1000000)::bigint::text as started from pg_locks l join pg_stat_activity a using (pid) where l.locktype = 'advisory' and l.granted`,
      );
      const { pid, started } = rows[0]!;
      // An orphan remembered with B's pid but an earlier start: a process that ended, its pid reused by B.
      const earlier = { pid, started: '946684800000000', key: `${pid}@946684800000000` };
      const refused = await holdOperatorLock(siteWith(pool, [earlier]), async () => 'ran').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(OperatorBusyError);
      expect(lostB.aborted).toBe(false);
      expect(await lockHolder()).toBe(pid);
      // The very process (pid and start) is ended, as an orphan of that catalog would be.
      const same = { pid, started, key: `${pid}@${started}` };
      expect(await holdOperatorLock(siteWith(pool, [same]), async () => 'ran')).toBe('ran');
      await until('B told its lock is lost', () => lostB.aborted, 5000);
    });
  } finally {
    await b.close();
    await pool.end();
  }
}, 60_000);

test('a catalog whose orphan could not be ended (catalog unreachable at the command\'s end) leaves alone the live lock session of another operator that got the same pid (review 63, D1)', async () => {
  const p = await proxy(Number(new URL(catalogUrl).port));
  const a = new TopologyCatalog({ url: p.via(catalogUrl), statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  const b = new TopologyCatalog({ url: catalogUrl }); // another operator (another process in real life)
  try {
    let orphan = 0;
    await a.withOperatorLock(async (lost) => {
      orphan = (await lockHolder())!;
      p.state.refuse = true; // new connections to the catalog fail (a failover under way): the orphan stays remembered
      await direct.query('select pg_terminate_backend($1)', [orphan]);
      await until('lost', () => lost.aborted, 10_000);
    });
    p.state.refuse = false;
    await until('the old lock process gone', async () => (await direct.query('select 1 from pg_stat_activity where pid = $1', [orphan])).rows.length === 0, 10_000);
    // The kernel hands out the orphan's pid to the next process forked: operator B's lock session
    // (set-up, tried a few times: another fork on the machine may take the pid first).
    let outcome: { aResult: unknown; bLost: boolean } | undefined;
    for (let attempt = 0; attempt < 5 && outcome === undefined; attempt++) {
      writeFileSync('/proc/sys/kernel/ns_last_pid', String(orphan - 1));
      outcome = await b.withOperatorLock(async (lostB) => {
        if ((await lockHolder()) !== orphan) return undefined;
        const aResult = await a.withOperatorLock(async () => 'A ran while B held the lock').catch((e: { code?: string }) => e.code);
        return { aResult, bLost: lostB.aborted };
      });
      await b.close(); // B's next lock session must be a fresh process
    }
    expect(outcome).toBeDefined(); // the pid was reused by B's lock session
    expect(outcome).toEqual({ aResult: 'E_OPERATOR_BUSY', bLost: false });
  } finally {
    p.state.refuse = false;
    await a.close();
    await b.close();
    await p.close();
  }
}, 60_000);

test('the unlock lost on a silent path: the command ends its lock session\'s server process; the next command gets the lock', async () => {
  const p = await proxy(Number(new URL(catalogUrl).port));
  const a = new TopologyCatalog({ url: p.via(catalogUrl), statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  try {
    let pid = 0;
    const started = performance.now();
    await a.withOperatorLock(async () => {
      pid = (await lockHolder())!;
      p.state.darkOn = { text: 'pg_advisory_unlock', passFirst: false };
    });
    const tookMillis = Math.round(performance.now() - started);
    console.log(JSON.stringify({ unlockLostCommandMillis: tookMillis, lockSession: pid }));
    expect(await lockHolder()).toBeUndefined();
    const second = await a.withOperatorLock(async () => 'ran').catch((e: { code?: string; message: string }) => `${e.code}: ${e.message}`);
    expect(second).toBe('ran');
  } finally {
    await direct.query(`select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted`);
    await a.close();
    await p.close();
  }
}, 60_000);

test('the lock request\'s answer lost: the command fails (E_CATALOG_UNAVAILABLE) and ends its lock session\'s server process; the retry gets the lock', async () => {
  await until('lock free', async () => (await lockHolder()) === undefined, 10_000);
  const p = await proxy(Number(new URL(catalogUrl).port));
  const a = new TopologyCatalog({ url: p.via(catalogUrl), statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  try {
    p.state.darkOn = { text: 'pg_try_advisory_lock', passFirst: true };
    const first = await a.withOperatorLock(async () => 'ran').catch((e: { code?: string }) => e.code);
    expect(first).toBe('E_CATALOG_UNAVAILABLE');
    expect(await lockHolder()).toBeUndefined();
    const second = await a.withOperatorLock(async () => 'ran').catch((e: { code?: string; message: string }) => `${e.code}: ${e.message}`);
    expect(second).toBe('ran');
  } finally {
    await direct.query(`select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted`);
    await a.close();
    await p.close();
  }
}, 60_000);

test('a command that ends while a heartbeat is unanswered: its lock session is dropped and ended, and the late error of that ending session does not crash the process', async () => {
  const clock = new ManualClock();
  const a = new TopologyCatalog({ url: catalogUrl, clock, heartbeatIntervalMillis: 1000 });
  const crashes: unknown[] = [];
  const onUncaught = (error: unknown): void => void crashes.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    let pid = 0;
    await a.withOperatorLock(async () => {
      pid = (await lockHolder())!;
      clock.advance(1000); // a heartbeat is sent; the command ends before its answer comes
    });
    // The session was dropped (a beat unanswered) and its server process ended: the lock is free.
    await until('the lock session gone', async () => (await direct.query('select 1 from pg_stat_activity where pid = $1', [pid])).rows.length === 0, 10_000);
    expect(await lockHolder()).toBeUndefined();
    // A round trip more, so a late error event of the dropped client has had its turn.
    await direct.query('select 1');
    expect(crashes).toEqual([]);
    expect(await a.withOperatorLock(async () => 'ran')).toBe('ran');
  } finally {
    process.off('uncaughtException', onUncaught);
    await a.close();
  }
}, 30_000);
