/**
 * A shard that stops answering while a move is planned (a dry run is all plan). Planning sessions
 * had no owner: the defaults' deadlines (30 s, then a 5 s probe), the system clock, the shard named
 * by its address, and a silent shard failed the plan as a move (`E_MOVE_FAILED`) while the operator
 * lock (a dry run takes it too) was held the whole time. Now each planning session has the
 * operation's deadlines and clock and the topology's shard id, and since nothing changed yet a
 * silent shard refuses the operation: `E_MOVE_REFUSED`, reason `unreachable`, naming the shard,
 * the catalog unchanged and the operator lock free at once.
 *
 * Two shards; the catalog lives on shard0's server, so the silent one is shard1. shard1's primary is
 * registered through a loopback TCP proxy (transparent until stalled). Three ways to go silent:
 * the proxy stalls every connection at the plan's first lock statement (a cut link), shard1's
 * processes are frozen (SIGSTOP) while the plan's statement waits for a lock, and shard1 is frozen
 * before a drain of shard0 needs it as the unsharded tables' target (its login never answers).
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import { createTopology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { moveHistory } from '../../../src/admin/mover/move-control';
import { PLAN_CONNECT_TIMEOUT_MILLIS } from '../../../src/admin/mover/plan-sessions';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { ErrorCodes } from '../../../src/kernel/errors';
import { untilWaitingForLock } from '../../support/lock-waits';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { freeze } from '../replication/replication-fault-fixture';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { within } from './within-deadline';

let f: MoverFixture;
let proxy: TcpProxy;
let catalogClient: Client;

beforeAll(async () => {
  f = await startMoverFixture('mover_plan_silent', 2);
  const direct = new URL(f.shards[1]!.primaryUrl);
  proxy = await startTcpProxy(Number(direct.port), direct.hostname);
  const proxied = new URL(direct);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const topology = createTopology({ shards: [{ id: 'shard0', primary: f.shards[0]!.primaryUrl }, { id: 'shard1', primary: proxied.toString() }] });
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  await catalog.install();
  await catalog.publish(topology, 'init');
  await catalog.close();
  expect((await moveHistory({ catalog: f.catalogUrl })).error).toBeNull(); // installs the move store
  await f.seed(topology, 0, 200);
  await f.pools[0]!.query(`insert into countries values ('fr', 'France')`); // shard0 holds the unsharded tables
  catalogClient = directClient(f.catalogUrl);
  catalogClient.on('error', () => undefined);
  await catalogClient.connect();
}, 150_000);

afterAll(async () => {
  await catalogClient?.end();
  await proxy?.close();
  await f?.close();
});

/** What a refused plan must leave as it was: the topology's versions, the moves, the registered tables. */
async function catalogState(): Promise<unknown> {
  const { rows } = await catalogClient.query(
    `select (select array_agg(version order by version) from kysely_scale.topology) as versions,
            (select count(*)::int from kysely_scale.move) as moves,
            (select count(*)::int from kysely_scale.sharded_table) as tables`,
  );
  return rows[0];
}

/** Another operator takes the catalog's operator lock (it fails with E_OPERATOR_BUSY while a command holds it). */
async function operatorLockIsFree(): Promise<boolean> {
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  try {
    return await within(5000, 'the operator lock', catalog.withOperatorLock(async () => true));
  } finally {
    await catalog.close();
  }
}

function dryRunDrain(shardId: string): Promise<MoveResult> {
  return drainShard({ catalog: f.catalogUrl, tables: TABLES, shardId, dryRun: true, tuning: { statementTimeoutMillis: 1000 } });
}

/** The refusal a silent shard1 makes of a drain's plan. */
function expectUnreachable(result: MoveResult): void {
  expect(result).toMatchObject({ ok: false, status: 'refused', moveId: null, dryRun: true });
  expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'unreachable', shardId: 'shard1' } });
}

test('every connection to the drained shard stalls at its first lock statement: the dry run is refused (unreachable) after the deadline and the probe; nothing changed, the lock is free', async () => {
  const before = await catalogState();
  const stalled = proxy.stallOn('kysely_scale_read_lock');
  const started = performance.now();
  let result: MoveResult;
  try {
    result = await within(15_000, 'a dry-run drain whose shard stalled', dryRunDrain('shard1'));
    const refusedAfterMillis = Math.round(performance.now() - started);
    await stalled;
    console.log(JSON.stringify({ planStalledRefusedAfterMillis: refusedAfterMillis, error: result.error?.message }));
    expectUnreachable(result);
    expect(result.error!.context).toMatchObject({ shard: 'shard1', option: 'statementTimeoutMillis', millis: 1000 });
    expect(result.error!.message).toMatch(
      /^The drain's plan stopped: shard "shard1" did not answer a statement \("savepoint kysely_scale_read_lock; set local lock_timeout = \?; lock table .*"\) within 1000 ms \(statementTimeoutMillis, --statement-timeout-ms\), and a new connection to it failed too \(no answer to the login in 1000 ms\): the shard is frozen, overloaded or unreachable\. Nothing was changed; run the drain again once the shard answers/,
    );
    // The deadline (1 s), the probe's login (1 s), the watch's tick, the session's close.
    expect(refusedAfterMillis).toBeLessThan(5000);
    expect(await catalogState()).toEqual(before);
    expect(await operatorLockIsFree()).toBe(true);
  } finally {
    proxy.stalled = false;
  }
  expect(await within(30_000, 'a dry-run drain once the link flows', dryRunDrain('shard1'))).toMatchObject({ error: null, status: 'planned' });
}, 60_000);

test("the drained shard freezes while the plan's NULL-key count waits for a lock: refused (unreachable) about two seconds later, the catalog unchanged, the lock free", async () => {
  const holder = directClient({ connectionString: f.shards[1]!.primaryUrl, application_name: 'lock holder' });
  holder.on('error', () => undefined);
  await holder.connect();
  const before = await catalogState();
  let thaw: (() => void) | undefined;
  try {
    await holder.query('begin');
    await holder.query('lock table orders in access exclusive mode');
    const drain = dryRunDrain('shard1');
    await untilWaitingForLock(f.pools[1]!, 'savepoint kysely_scale_read_lock');
    thaw = freeze(f.cluster.shards[1]!.primary);
    const frozenAt = performance.now();
    const result = await within(15_000, 'a dry-run drain whose shard froze', drain);
    const refusedAfterMillis = Math.round(performance.now() - frozenAt);
    console.log(JSON.stringify({ planFrozenRefusedAfterMillis: refusedAfterMillis, error: result.error?.message }));
    expectUnreachable(result);
    expect(result.error!.message).toMatch(/^The drain's plan stopped: shard "shard1" did not answer a statement \("savepoint kysely_scale_read_lock; .*"\) within 1000 ms .*a new connection to it failed too/);
    expect(result.error!.message).toContain('Nothing was changed');
    // Its own lock_timeout (5 s) never fired on the frozen server: the deadline (1 s) and the probe's (1 s) did.
    expect(refusedAfterMillis).toBeLessThan(4000);
    expect(await catalogState()).toEqual(before);
    expect(await operatorLockIsFree()).toBe(true);
  } finally {
    thaw?.();
    await holder.query('rollback').catch(() => undefined);
    await holder.end().catch(() => undefined);
  }
  expect(await within(30_000, 'a dry-run drain once the shard answers', dryRunDrain('shard1'))).toMatchObject({ error: null, status: 'planned' });
}, 60_000);

test("the unsharded tables' target is frozen before a drain of their holder reaches it: its login never answers, refused (unreachable) after the plan's connect deadline", async () => {
  const before = await catalogState();
  const thaw = freeze(f.cluster.shards[1]!.primary);
  const started = performance.now();
  try {
    const result = await within(20_000, 'a dry-run drain whose target froze', dryRunDrain('shard0'));
    const refusedAfterMillis = Math.round(performance.now() - started);
    console.log(JSON.stringify({ planTargetFrozenRefusedAfterMillis: refusedAfterMillis, error: result.error?.message }));
    expectUnreachable(result);
    expect(result.error!.message).toMatch(/^Shard "shard1" \(postgres(ql)?:\/\/[^ ]*\) cannot be reached: no answer to the login in 5000 ms \(frozen, overloaded or unreachable\)\. Nothing was changed\.$/);
    expect(refusedAfterMillis).toBeGreaterThanOrEqual(PLAN_CONNECT_TIMEOUT_MILLIS - 50);
    expect(refusedAfterMillis).toBeLessThan(PLAN_CONNECT_TIMEOUT_MILLIS + 3000);
    expect(await catalogState()).toEqual(before);
    expect(await operatorLockIsFree()).toBe(true);
  } finally {
    thaw();
  }
  expect(await within(30_000, 'a dry-run drain once the target answers', dryRunDrain('shard0'))).toMatchObject({
    error: null,
    status: 'planned',
    plan: { unsharded: { source: 'shard0', target: 'shard1' } },
  });
}, 60_000);
