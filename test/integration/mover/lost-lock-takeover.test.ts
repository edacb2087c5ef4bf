/**
 * A mover whose operator lock was lost unnoticed (its lock session's path went silent and the
 * server let the lock go; its heartbeat has not fired yet) goes on while a second operator aborts
 * the move. Before, the guarded save stopped the abort only at its first save, after its rollback
 * had lowered the switched fence and was clearing the target: meanwhile the first mover saved its
 * pending publish mark, published the emptied target as the holder of the unsharded tables and its
 * clean-up truncated the source, every row lost (found by review 58). Now `abort` (and `resume`)
 * claim the move with a guarded save before they change anything, so the first mover's next save,
 * the one before its publish, is refused: it stops, publishes nothing, and the abort rolls back.
 */
import { connect, createServer, type Socket } from 'node:net';
import { startUnshardedFixture, notesByShard } from './unsharded-fixture';
import { TABLES } from './mover-fixture';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { abortMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { directClient, directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

/** A catalog proxy that can silence one connection (by the port the server sees) both ways without closing it. */
async function startProxy(targetPort: number) {
  const conns = new Map<number, { client: Socket; upstream: Socket; silent: boolean }>();
  const all = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    all.add(client); all.add(upstream);
    client.on('error', () => undefined); upstream.on('error', () => undefined);
    const c = { client, upstream, silent: false };
    upstream.on('connect', () => conns.set(upstream.localPort!, c));
    client.on('data', (d: Buffer) => { if (!c.silent) upstream.write(d); });
    upstream.on('data', (d: Buffer) => { if (!c.silent) client.write(d); });
    client.on('close', () => { if (!c.silent) upstream.destroy(); });
    upstream.on('close', () => { if (!c.silent) client.destroy(); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    via(url: string) { const u = new URL(url); u.hostname = '127.0.0.1'; u.port = String((server.address() as { port: number }).port); return u.toString(); },
    silence(serverSeenPort: number) { const c = conns.get(serverSeenPort); if (c === undefined) throw new Error('no such connection ' + serverSeenPort); c.silent = true; },
    async close() { for (const s of all) s.destroy(); await new Promise<void>((r) => server.close(() => r())); },
  };
}

// 1 s catalog deadlines: the first mover's unlock on its silent lock session gives up after 1.5 s (not
// 10.5 s), so it returns, and the test lets the abort's held-up clear go on, within the abort's 5 s lock bound.
const CATALOG_TIMEOUT = process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS;
beforeAll(() => {
  process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS = '1000';
});
afterAll(() => {
  if (CATALOG_TIMEOUT === undefined) delete process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS;
  else process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS = CATALOG_TIMEOUT;
});

test('abort while a mover that lost its lock unnoticed goes on: the mover stops at its next save, publishes nothing, and no row is lost', async () => {
  const f = await startUnshardedFixture('lost_lock_takeover', 2);
  const proxy = await startProxy(Number(new URL(f.catalogUrl).port));
  const cat = directPool({ connectionString: f.catalogUrl, max: 2 });
  const blocker = directClient({ connectionString: f.shards[1]!.primaryUrl });
  await blocker.connect();
  let abortRun: Promise<Awaited<ReturnType<typeof abortMove>>> | undefined;
  try {
    const v1 = await f.init(2, 32);
    await f.seed(v1, 0, 60);
    const drain = await drainShard({
      catalog: proxy.via(f.catalogUrl),
      tables: TABLES,
      shardId: 'shard0',
      tuning: { cleanupDelayMillis: 0 },
      hook: async (_b, at) => {
        if (at === 'unsharded-published') {
          // This mover published the target as the holder; the abort's clear of the target goes on now.
          await blocker.query('commit');
          await abortRun;
          return;
        }
        if (at !== 'unsharded-switched') return;
        // The lock's session goes silent (path dropped) and its server process ends: the lock is free, this mover does not know.
        const { rows } = await cat.query<{ pid: number; port: number }>(
          `select a.pid, a.client_port as port from pg_locks l join pg_stat_activity a using (pid) where l.locktype = 'advisory' and l.granted and a.datname = current_database()`,
        );
        expect(rows).toHaveLength(1);
        proxy.silence(rows[0]!.port);
        await cat.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        await until('lock free', async () => (await cat.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and granted`)).rows[0].n === 0, 10_000);
        // A second operator aborts; its clear of the target waits on a lock held here, after it lowered the switched fence.
        await blocker.query('begin; lock table notes in access exclusive mode');
        abortRun = abortMove({ catalog: f.catalogUrl });
        const shard1 = directPool({ connectionString: f.shards[1]!.primaryUrl, max: 1 });
        try {
          await until('abort waits on the target', async () => (await shard1.query(`select count(*)::int as n from pg_locks where relation = 'notes'::regclass and not granted`)).rows[0].n > 0, 20_000);
        } finally {
          await shard1.end();
        }
      },
    });
    expect(drain.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { reason: 'record-changed' } });
    expect(drain.unsharded?.holderMoved ?? false).toBe(false);
    await blocker.query('commit').catch(() => undefined);
    const aborted = await abortRun!;
    expect(aborted.error).toBeNull();
    expect(aborted.unsharded).toMatchObject({ phase: 'aborted', holderMoved: false });
    const catalog = new TopologyCatalog({ url: f.catalogUrl });
    const latest = (await catalog.latest())!;
    await catalog.close();
    expect(latest.unshardedShardId ?? 'shard0').toBe('shard0');
    expect(latest.shards.map((s) => s.id)).toContain('shard0');
    // Every shared note once, on shard0, which still holds the unsharded tables.
    const rows = await notesByShard(f.pools);
    expect(rows.size).toBe(40);
    expect([...rows.values()].every((copies) => copies.length === 1 && copies[0]![0] === 0)).toBe(true);
  } finally {
    await blocker.end().catch(() => undefined);
    await cat.end();
    await proxy.close();
    await f.close();
  }
}, 180_000);
