/**
 * The mover's operator lock session's path goes silent mid-cutover (the server never learns the
 * client went: its process, and the advisory lock, live on), found by review 62. The mover notices
 * (heartbeat deadline) and backs out, which takes the lock again: before, it found the lock held
 * by its own orphaned server process and skipped the back-out as if another operator held it, so
 * both shards required a version nobody published (every app statement refused, KS001) and
 * `resume` was refused (E_OPERATOR_BUSY) until TCP keepalive ended the orphan, about two hours.
 * Now the orphan is ended (pg_terminate_backend, only a process of the catalog's role and
 * application name) and the lock taken; when the command ends no orphan keeps the lock.
 */
import { createServer, connect, type Socket } from 'node:net';
import type { Pool } from 'pg';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

let f: MoverFixture;
beforeAll(async () => {
  f = await startMoverFixture('lock_path_silent', 2);
}, 60_000);
afterAll(() => f?.close());

interface Conn { client: Socket; upstream: Socket; locker: boolean; dark: boolean; clientClosed: boolean }

/** A proxy; `darken()` silences (both ways, server side kept open) every connection that sent pg_try_advisory_lock so far. */
async function proxy(targetPort: number) {
  const conns = new Set<Conn>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const c: Conn = { client, upstream, locker: false, dark: false, clientClosed: false };
    conns.add(c);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('data', (chunk: Buffer) => {
      if (chunk.includes('pg_try_advisory_lock')) c.locker = true;
      if (!c.dark) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!c.dark) client.write(chunk);
    });
    client.on('close', () => {
      c.clientClosed = true;
      if (!c.dark) upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    via: (url: string) => {
      const u = new URL(url);
      u.host = `127.0.0.1:${port}`;
      return u.toString();
    },
    darken: () => {
      const dark = [...conns].filter((c) => c.locker && !c.clientClosed);
      for (const c of dark) c.dark = true;
      return dark;
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

/** A shard's required version and hidden slots. */
async function guardOf(pool: Pool): Promise<{ required_version: number; hidden: string | null }> {
  return (await pool.query<{ required_version: number; hidden: string | null }>('select required_version, hidden::text as hidden from kysely_scale.shard_guard')).rows[0]!;
}

/** Rows of users on all shards, copies included (read directly, as the operator). */
async function rowsOnShards(): Promise<number> {
  let total = 0;
  for (const pool of f.pools) total += (await pool.query<{ n: number }>('select count(*)::int as n from users')).rows[0]!.n;
  return total;
}

async function latestVersion(): Promise<number> {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  try {
    return (await catalog.latest())!.version;
  } finally {
    await catalog.close();
  }
}

test('lock session path silent mid-cutover: the mover ends its orphaned lock session, takes the lock again and backs out; resume then finishes', async () => {
  const v1 = await f.init(2, 64);
  await f.seed(v1, 0, 200);
  const p = await proxy(Number(new URL(f.catalogUrl).port));
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
  try {
    const result = await moveSlots({
      catalog: p.via(f.catalogUrl),
      slots: '0-15',
      to: 'shard1',
      tables: TABLES,
      hook: async (_batch, at) => {
        if (at !== 'switched') return;
        const dark = p.darken();
        expect(dark).toHaveLength(1);
        // Until the mover gave up on the lock session (its heartbeat's deadline passed: it destroys the socket).
        await until('the mover dropped its lock session', async () => dark[0]!.clientClosed, 30_000);
      },
    });
    expect(result.error).toMatchObject({ code: 'E_MOVE_FAILED', message: expect.stringContaining('operator lock was lost') });
    const latest = await latestVersion();
    // Backed out: no shard requires a version above the catalog's, and the owner shows the slots again.
    const guards = [];
    for (const pool of f.pools) {
      const guard = await guardOf(pool);
      guards.push({ required: guard.required_version, hides0to15: guard.hidden?.slice(0, 16) === '1'.repeat(16) });
    }
    for (const g of guards) expect(g.required).toBeLessThanOrEqual(latest);
    expect(guards[0]!.hides0to15).toBe(false);
    // No session keeps the lock once the mover returned.
    const holders = await catalogPool.query(`select 1 from pg_locks where locktype = 'advisory' and granted`);
    expect(holders.rows).toHaveLength(0);
    const resumed = await resumeMove({ catalog: f.catalogUrl });
    expect(resumed.error).toBeNull();
    expect(resumed.status).toBe('done');
    expect(await rowsOnShards()).toBe(200);
  } finally {
    await catalogPool.end();
    await p.close();
  }
}, 120_000);

test('lock lost unnoticed (path silent, server process ended) when a cutover fails: the back-out confirms the lock first, finds it gone and leaves the shards to the operator now holding it', async () => {
  const p = await proxy(Number(new URL(f.catalogUrl).port));
  const catalogPool = directPool({ connectionString: f.catalogUrl, max: 2 });
  const other = directPool({ connectionString: f.catalogUrl, max: 1 });
  const otherOperator = await other.connect();
  const saved = process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS;
  process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS = '1000'; // the confirmation's deadline
  try {
    const result = await moveSlots({
      catalog: p.via(f.catalogUrl),
      slots: '0-15',
      to: 'shard0',
      tables: TABLES,
      hook: async (_batch, at) => {
        if (at !== 'publishing') return;
        // The lock's path goes silent and its server process ends: the lock is free, the mover does not know yet.
        expect(p.darken()).toHaveLength(1);
        const { rows } = await catalogPool.query<{ pid: number }>(`select pid from pg_locks where locktype = 'advisory' and granted`);
        await catalogPool.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
        await until('the lock free', async () => (await catalogPool.query(`select 1 from pg_locks where locktype = 'advisory' and granted`)).rows.length === 0, 10_000);
        // Another operator takes it; then this cutover fails (before its publish).
        await otherOperator.query(`select pg_advisory_lock(hashtext('kysely_scale_operator kysely_scale'))`);
        throw new Error('the cutover failed after the switch');
      },
    });
    expect(result.error?.message).toContain('the cutover failed after the switch');
    // Not backed out: the source (shard1) hides the slots, the target (shard0) shows them, both require the unpublished version.
    const latest = await latestVersion();
    const source = await guardOf(f.pools[1]!);
    const target = await guardOf(f.pools[0]!);
    expect(source.hidden?.slice(0, 16)).toBe('1'.repeat(16));
    expect(target.hidden?.slice(0, 16) ?? '0'.repeat(16)).toBe('0'.repeat(16));
    expect(target.required_version).toBe(latest + 1);
    await otherOperator.query(`select pg_advisory_unlock(hashtext('kysely_scale_operator kysely_scale'))`);
    const resumed = await resumeMove({ catalog: f.catalogUrl });
    expect(resumed.error).toBeNull();
    expect(resumed.status).toBe('done');
    expect(await rowsOnShards()).toBe(200);
  } finally {
    if (saved === undefined) delete process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS;
    else process.env.KYSELY_SCALE_CATALOG_TIMEOUT_MS = saved;
    otherOperator.release();
    await other.end();
    await catalogPool.end();
    await p.close();
  }
}, 120_000);
