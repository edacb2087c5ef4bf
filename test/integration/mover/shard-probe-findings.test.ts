/**
 * What a mover session's deadline probe must not take for a silent shard, and what it must not
 * miss (review 47). One server; 1 s statement deadlines.
 * - A probe refused by a live server (a role's CONNECTION LIMIT 1 reached by the session itself:
 *   "too many connections for role", 53300) is an answer: the statement goes on. Once a probe
 *   connection is open it is kept for the session (one, reused) and closed with it.
 * - Behind a session pooler (a relay rewriting BackendKeyData: the client's processID is not the
 *   server's pid), the probe asks about the pid the server gave (`pg_backend_pid()`).
 * - Many short lock waits in one statement are not summed into one long one (`pg_locks.waitstart`).
 * - A large answer the mover is still reading (the backend in ClientWrite) is progress.
 * - With `track_activities = off` a dropped path is still found (ClientRead, seen twice).
 * - On a ManualClock nothing of the probe runs on real time.
 * - An advisory lock held by another role's session: the message names it so.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { startTestCluster, type TestCluster } from '../../../src/testing';
import { openShardSession, type ShardSession } from '../../../src/admin/mover/shard-session';
import { PROBE_APPLICATION_NAME } from '../../../src/admin/mover/shard-liveness';
import { ShardLockError, ShardSilentError } from '../../../src/admin/mover/mover-errors';
import { ManualClock } from '../../../src/kernel/clock';
import { freeze } from '../replication/replication-fault-fixture';
import { outcome, within } from './within-deadline';

let cluster: TestCluster;
let url: URL;
let admin: Client;
const opened: ShardSession[] = [];
const relays: Server[] = [];
const sockets: Socket[] = [];

function as(user: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = `Pw_${user}_S3cret`;
  return u.toString();
}

async function session(u: string, options: { clock?: ManualClock } = {}): Promise<ShardSession> {
  const s = await openShardSession(u, 5000, { shard: 's', deadlines: { statementTimeoutMillis: 1000, copyIdleTimeoutMillis: 1000 }, ...options });
  opened.push(s);
  return s;
}


async function probes(): Promise<number> {
  return (await admin.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where application_name = $1`, [PROBE_APPLICATION_NAME])).rows[0]!.n;
}

/** A relay that hands the client a BackendKeyData pid of its own, as a session pooler does. */
async function poolerRelay(): Promise<number> {
  const relay = createServer((client) => {
    const server = connect(Number(url.port), url.hostname);
    sockets.push(client, server);
    let buffered = Buffer.alloc(0);
    let passthrough = false;
    client.on('data', (chunk) => server.write(chunk));
    server.on('data', (chunk: Buffer) => {
      if (passthrough) return void client.write(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5 && !passthrough) {
        const length = buffered.readInt32BE(1);
        if (buffered.length < 1 + length) break;
        const message = Buffer.from(buffered.subarray(0, 1 + length));
        buffered = buffered.subarray(1 + length);
        if (message[0] === 0x4b) message.writeInt32BE(900_000, 5); // BackendKeyData: the pooler's pid
        client.write(message);
        if (message[0] === 0x5a) {
          passthrough = true; // ReadyForQuery: the login is over
          if (buffered.length > 0) client.write(buffered);
        }
      }
    });
    for (const s of [client, server]) s.on('error', () => undefined);
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  relays.push(relay);
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return (relay.address() as { port: number }).port;
}

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = await cluster.createDatabase('probe_findings');
  url = new URL(shard!.primaryUrl);
  admin = directClient(url.toString());
  await admin.connect();
  for (const role of ['mover_one', 'mover_plain', 'app_other']) await admin.query(`create role ${role} login password 'Pw_${role}_S3cret'`);
  await admin.query(`alter role mover_one connection limit 1`);
}, 60_000);

afterAll(async () => {
  for (const s of opened) s.destroy();
  for (const s of sockets) s.destroy();
  for (const relay of relays) relay.close();
  await admin?.end();
  await cluster?.stop();
});

test('a probe the server refuses (the role at its CONNECTION LIMIT) is an answer: a healthy 4 s statement completes', async () => {
  const s = await session(as('mover_one'));
  const { ms, error } = await outcome('connectionLimit', s.client.query('select pg_sleep(4)'));
  expect(error).toBeUndefined();
  expect(ms).toBeGreaterThanOrEqual(3950); // ran to its end (pg_sleep times on the server's wall clock: a few ms short on ours)
});

test('one probe connection per session, kept while it lives and closed with it', async () => {
  const s = await session(url.toString());
  const seen = new Set<number>();
  const pending = s.client.query('select pg_sleep(3.5)');
  const timer = setInterval(() => void admin.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = $1`, [PROBE_APPLICATION_NAME]).then((r) => r.rows.forEach((row) => seen.add(row.pid)), () => undefined), 100);
  try {
    expect((await outcome('keptProbe', pending)).error).toBeUndefined();
  } finally {
    clearInterval(timer);
  }
  // Three probes (at 1, 2 and 3 s) over one connection, still open while the session is.
  expect(seen.size).toBe(1);
  expect(await probes()).toBe(1);
  await s.close();
  await within(5000, 'the probe connection closes', (async () => {
    while ((await probes()) > 0) await new Promise((resolve) => setImmediate(resolve));
  })());
});

test("behind a session pooler (the login's pid is the pooler's), a healthy 3 s statement completes", async () => {
  const via = new URL(url);
  via.hostname = '127.0.0.1';
  via.port = String(await poolerRelay());
  const s = await session(via.toString());
  expect((s.client as unknown as { processID: number }).processID).toBe(900_000);
  const { ms, error } = await outcome('pooled', s.client.query('select pg_sleep(3)'));
  expect(error).toBeUndefined();
  expect(ms).toBeGreaterThanOrEqual(2950); // ran to its end (pg_sleep times on the server's wall clock: a few ms short on ours)
});

test('many short lock waits in one statement are not summed into one: it completes', async () => {
  const contenders = [directClient(url.toString()), directClient(url.toString())];
  for (const c of contenders) await c.connect();
  let run = true;
  const loops = Promise.all(contenders.map(async (c) => {
    while (run) await c.query('select pg_advisory_lock(1), pg_sleep(0.1), pg_advisory_unlock(1)');
  }));
  try {
    const s = await session(url.toString());
    const { ms, error } = await outcome('shortLockWaits', s.client.query(`do $$ begin for i in 1..80 loop perform pg_advisory_lock(1); perform pg_advisory_unlock(1); perform pg_sleep(0.02); end loop; end $$`), 60_000);
    expect(error).toBeUndefined();
    expect(ms).toBeGreaterThan(6000); // longer than the mover's 5 s lock bound, mostly in lock waits
  } finally {
    run = false;
    await loops;
    await Promise.all(contenders.map((c) => c.end()));
  }
}, 90_000);

test('a large answer the mover is still reading (its backend in ClientWrite) completes', async () => {
  const s = await session(url.toString());
  const { error } = await outcome('largeAnswer', s.client.query(`select g, repeat('x', 20) as pad from generate_series(1, 2000000) g`));
  expect(error).toBeUndefined();
}, 60_000);

test('with track_activities off, a dropped path is found: the backend waits to read a statement (ClientRead) while the mover waits for an answer', async () => {
  const relay = createServer((client) => {
    const server = connect(Number(url.port), url.hostname);
    sockets.push(client, server);
    client.on('data', (chunk) => server.write(chunk));
    server.on('data', (chunk) => !client.destroyed && (client as Socket & { lost?: boolean }).lost !== true && client.write(chunk));
    for (const s of [client, server]) s.on('error', () => undefined);
    server.on('close', () => client.destroy());
  });
  relays.push(relay);
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const via = new URL(url);
  via.hostname = '127.0.0.1';
  via.port = String((relay.address() as { port: number }).port);
  via.searchParams.set('options', '-c track_activities=off');
  const s = await session(via.toString());
  await s.client.query('begin');
  // The session's replies stop passing (a dropped path); the server gets its statement and answers it.
  (sockets.at(-2) as Socket & { lost?: boolean }).lost = true;
  const { ms, error } = await outcome('trackActivitiesOff', s.client.query('select 1'), 15_000);
  expect(error).toBeInstanceOf(ShardSilentError);
  expect(error!.message).toMatch(/its backend \(pid \d+\) is waiting for a statement \(ClientRead; its state hidden: disabled\), its answer never came: the connection to it was lost/);
  expect(ms).toBeLessThan(3000);
}, 30_000);

test('on a ManualClock the probe keeps no real time: a frozen shard fails the statement when the clock passes the probe deadline, not before', async () => {
  const clock = new ManualClock();
  const s = await session(url.toString(), { clock });
  const thaw = freeze(cluster.shards[0]!.primary);
  try {
    let settled: Error | undefined;
    const pending = s.client.query('select 1').then(() => new Error('answered'), (e: unknown) => e as Error);
    void pending.then((e) => (settled = e));
    clock.advance(1000); // the deadline: the probe starts, its login on the frozen server gets no answer
    await new Promise((resolve) => setTimeout(resolve, 2500)); // real time only: nothing may fail on it
    expect(settled).toBeUndefined();
    clock.advance(1000); // the probe's deadline, on the session's clock
    const error = await within(5000, 'the statement fails', pending);
    expect(error).toBeInstanceOf(ShardSilentError);
    expect(error.message).toContain('no answer to the login in 1000 ms');
  } finally {
    thaw();
  }
}, 30_000);

test("a lock wait on another role's advisory lock names the lock and hides the statement", async () => {
  const other = directClient(as('app_other'));
  await other.connect();
  try {
    await other.query('begin');
    await other.query('select pg_advisory_xact_lock(7)');
    const s = await session(as('mover_plain'));
    const { error } = await outcome('advisoryLock', s.client.query('select pg_advisory_lock(7)'));
    expect(error).toBeInstanceOf(ShardLockError);
    expect(error!.message).toMatch(
      new RegExp(`^Shard "s": a statement \\("select pg_advisory_lock\\(\\?\\)"\\) waited [5-7]\\.\\d s for an advisory lock, kept by backend ${(other as unknown as { processID: number }).processID} "" (unknown|idle in transaction)( for \\d+ s)?, holding it \\(statement hidden: another role\\)\\. `),
    );
  } finally {
    await other.end();
  }
}, 30_000);
