/**
 * A shard that stops answering mid-statement (its postmaster and backends frozen with SIGSTOP: TCP
 * stays open and acknowledged, no answer, no statement_timeout) no longer holds the mover or
 * `verify` forever. Past `statementTimeoutMillis` without an answer (a paged scan's range, the
 * clean-up's statements, the cutover's on a frozen target), or `copyIdleTimeoutMillis` of silence
 * in a table read by one COPY (partitioned), the shard is probed from a fresh connection, which
 * gets no answer either (within the same deadline): the move stops with `E_MOVE_FAILED` naming the
 * shard, and `resume` finishes it once it answers again (SIGCONT), rows intact. `verify` stops with
 * `E_MOVE_REFUSED`, reason `unreachable`. Two shards, no replicas; the catalog lives on shard0's
 * server, so the frozen one is always shard1 (a source, or a target).
 */
import { slotOf } from '../../../src/cluster/slot-hash';
import type { Topology } from '../../../src/cluster/topology';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { verifyShards } from '../../../src/admin/mover/shard-verify';
import { MOVER_APPLICATION_NAME } from '../../../src/admin/mover/shard-session';
import type { MoveResult } from '../../../src/admin/mover/move-result';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze, until } from '../replication/replication-fault-fixture';
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { within } from './within-deadline';

/**
 * Users of the moves; events (a partitioned table: read by one COPY) of the last two tests, with
 * rows wide enough (400 bytes) that a shard's COPY of them (80 MB) outgrows the loopback socket
 * buffers (36 MB here), so a freeze comes while the shard is still sending.
 */
const USERS = 4000;
const EVENTS = 480_000;
const WITH_EVENTS = { ...TABLES, events: 'user_id' };
let f: MoverFixture;
let v1: Topology;

beforeAll(async () => {
  f = await startMoverFixture('mover_shard_silent', 2);
  v1 = await f.init(2);
  await f.seed(v1, 0, USERS);
  for (const pool of f.pools) {
    await pool.query(`create table events (user_id bigint not null, id integer not null, body text not null) partition by hash (user_id);
      create table events_0 partition of events for values with (modulus 2, remainder 0);
      create table events_1 partition of events for values with (modulus 2, remainder 1);
      create index on events (user_id)`);
  }
  // None in the slots the first two tests move, before events is registered as a sharded table.
  const byShard: number[][] = [[], []];
  for (let id = 0; id < EVENTS; id++) {
    const slot = slotOf(id);
    if (slot < 2048 || slot >= 2816) byShard[v1.shardForSlot(slot).index]!.push(id);
  }
  for (const [i, ids] of byShard.entries()) {
    await f.pools[i]!.query(`insert into events select u, 1, repeat('e', 400) from unnest($1::bigint[]) u`, [ids]);
  }
}, 150_000);

afterAll(() => f?.close());

/** The shard's postmaster and backends frozen until the returned thaw runs; `at` when. */
function freezer(index: number): { freeze(): void; thaw(): void; at(): number } {
  let thaw: (() => void) | undefined;
  let at = 0;
  return {
    freeze() {
      if (thaw !== undefined) return;
      thaw = freeze(f.cluster.shards[index]!.primary);
      at = performance.now();
    },
    thaw: () => thaw?.(),
    at: () => at,
  };
}

/** Moves `slots` to shard0 from shard1 (or, with `to: 'shard1'`, the other way), shard1 frozen by `freezeWhen` (given the freeze) mid-move; thawed afterwards. */
async function moveWhileFrozen(name: string, options: Omit<Parameters<typeof moveSlots>[0], 'catalog' | 'to'> & { to?: string }, freezeWhen: (freeze: () => void) => Pick<Parameters<typeof moveSlots>[0], 'onProgress' | 'hook'>): Promise<{ result: MoveResult; failedAfterMillis: number }> {
  const frozen = freezer(1);
  let result: MoveResult;
  try {
    result = await within(30_000, `a move whose source froze (${name})`, moveSlots({ catalog: f.catalogUrl, to: 'shard0', ...options, ...freezeWhen(() => frozen.freeze()) }));
  } finally {
    frozen.thaw();
  }
  expect(frozen.at()).toBeGreaterThan(0);
  const failedAfterMillis = Math.round(performance.now() - frozen.at());
  console.log(JSON.stringify({ [name]: { failedAfterMillis, error: result.error?.message } }));
  return { result, failedAfterMillis };
}

/** The start of a ShardSilentError's message: `waitedFor` (a pattern) not answered within `millis` (`options`), and the probe's connection not answered either (within the same deadline). */
function silentAnswer(waitedFor: string, millis: number, options: string): RegExp {
  return new RegExp(`^Shard "shard1" did not answer ${waitedFor} within ${millis} ms \\(${options}\\), and a new connection to it failed too \\(no answer to the (login|question) in ${millis} ms\\): the shard is frozen, overloaded or unreachable\\. `);
}

/** The move stopped naming the shard, as the mover reports it; then `resume` (the shard answering again) finishes it and every row is in place. */
async function expectSilentThenResumed(result: MoveResult, shard: string, answer: RegExp, tables: Readonly<Record<string, string>>): Promise<void> {
  expect(result.status).toBe('open');
  expect(result.error).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { shard } });
  expect(result.error!.message).toMatch(answer);
  expect(result.error!.message).toContain('Resume once the shard answers (or abort).');
  expect(result.error!.message).toContain('give it longer with --');
  // The interrupted command's tuning is not stored with the move: unpaced, as the moves here ran.
  const resumed = await within(60_000, 'resume', resumeMove({ catalog: f.catalogUrl, tuning: { niceRatio: 0, probeSlowMillis: 0 } }));
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  expect(await verifyShards({ catalog: f.catalogUrl, tables })).toMatchObject({ ok: true, misplaced: [], unplaceable: [] });
}

test('the source frozen during a paged copy: the scan fails at statementTimeoutMillis naming the shard; resume finishes the move', async () => {
  const { result, failedAfterMillis } = await moveWhileFrozen(
    'pagedScanSourceFrozen',
    // Throttled: a copy of a few seconds, the freeze coming between its ranges.
    { tables: TABLES, slots: '2048-2559', maxRowsPerSecond: 1000, tuning: { statementTimeoutMillis: 1000, probeSlowMillis: 0 } },
    (freeze) => ({ onProgress: (p) => p.phase === 'capturing' && p.rowsCopied > 0 && freeze() }),
  );
  // The deadline, the probe's (1 s), the rows the throttle still held (about 100 ms of them), the watch's tick, closing the sessions (1 s at most).
  expect(failedAfterMillis).toBeLessThan(5000);
  await expectSilentThenResumed(result, 'shard1', silentAnswer('(a statement \\(".*"\\)|a COPY it reads)', 1000, 'statementTimeoutMillis, --statement-timeout-ms'), TABLES);
}, 120_000);

test('the source frozen as the clean-up deletes: the delete fails at statementTimeoutMillis naming the shard; resume cleans up', async () => {
  const { result, failedAfterMillis } = await moveWhileFrozen(
    'cleanupSourceFrozen',
    { tables: TABLES, slots: '2560-2815', tuning: { statementTimeoutMillis: 1000, probeSlowMillis: 0, cleanupDelayMillis: 0 } },
    (freeze) => ({ hook: (_batch, point) => void (point === 'cleaning' && freeze()) }),
  );
  expect(failedAfterMillis).toBeLessThan(4000);
  await expectSilentThenResumed(result, 'shard1', silentAnswer('a statement \\("delete from .*"\\)', 1000, 'statementTimeoutMillis, --statement-timeout-ms'), TABLES);
}, 120_000);

test("the target frozen in the cutover, after the source's switch: the target's statement fails at statementTimeoutMillis plus the probe's naming the shard; resume finishes the cutover", async () => {
  const { result, failedAfterMillis } = await moveWhileFrozen(
    'cutoverTargetFrozen',
    // Slots the first test moved to shard0 go back to shard1: shard1 is the target now.
    { to: 'shard1', tables: TABLES, slots: '2048-2303', tuning: { statementTimeoutMillis: 1000, probeSlowMillis: 0, niceRatio: 0 } },
    (freeze) => ({ hook: (_batch, point) => void (point === 'switched' && freeze()) }),
  );
  expect(failedAfterMillis).toBeLessThan(4000);
  await expectSilentThenResumed(result, 'shard1', silentAnswer('a statement \\("update kysely_scale.shard_guard set required_version = .*"\\)', 1000, 'statementTimeoutMillis, --statement-timeout-ms'), TABLES);
  const owners = (await f.rowsOf('users')).filter((r) => { const slot = slotOf(Number(r.key)); return slot >= 2048 && slot <= 2303; });
  expect(owners.length).toBeGreaterThan(0);
  expect(owners.every((r) => r.shard === 1)).toBe(true);
}, 120_000);

test('the source frozen mid-COPY of a table read in one statement (partitioned): it fails after copyIdleTimeoutMillis of silence; resume finishes the move', async () => {
  const { result, failedAfterMillis } = await moveWhileFrozen(
    'singleCopySourceFrozen',
    // events is copied first (tables go in name order), by one COPY of the whole table.
    { tables: WITH_EVENTS, slots: '2816-3071', tuning: { copyIdleTimeoutMillis: 1500, niceRatio: 0, probeSlowMillis: 0 } },
    (freeze) => ({ onProgress: (p) => p.phase === 'capturing' && p.rowsCopied > 0 && freeze() }),
  );
  // The rows already in the socket buffers, then the deadline and the probe's.
  expect(failedAfterMillis).toBeLessThan(7500);
  await expectSilentThenResumed(result, 'shard1', silentAnswer('a COPY it reads', 1500, 'copyIdleTimeoutMillis, --copy-idle-timeout-ms'), WITH_EVENTS);
}, 120_000);

test('verify with a shard frozen mid-scan stops with E_MOVE_REFUSED (unreachable) naming it, at its COPY or statement deadline', async () => {
  const shard = freezer(1);
  let outcome;
  try {
    // Paced (nice ratio 3), so the scan of events lasts: a fast one could end between two looks.
    const running = verifyShards({ catalog: f.catalogUrl, tables: WITH_EVENTS, tuning: { copyIdleTimeoutMillis: 1500, statementTimeoutMillis: 1000, niceRatio: 3 } });
    // Frozen once verify's COPY of events began on shard1 (shard0's tables come first): running, or
    // paused between its ranges (its last statement still shows), the next thing it asks goes unanswered.
    const shard1 = f.pools[1]!;
    await until('verify scanning events on shard1', async () => {
      const { rows } = await shard1.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where application_name = $1 and query like 'copy (select "user_id"::text%events%'`,
        [MOVER_APPLICATION_NAME],
      );
      return rows[0]!.n > 0;
    }, 30_000);
    shard.freeze();
    outcome = await within(20_000, 'verify of a frozen shard', running);
  } finally {
    shard.thaw();
  }
  const failedAfterMillis = Math.round(performance.now() - shard.at());
  console.log(JSON.stringify({ verifyShardFrozen: { failedAfterMillis, error: outcome.error?.message } }));
  expect(outcome.ok).toBe(false);
  expect(outcome.error).toMatchObject({ code: ErrorCodes.MOVE_REFUSED, context: { reason: 'unreachable', shard: 'shard1' } });
  // Frozen mid-COPY, or (the shard having sent the rest of its COPY just before) at the next statement.
  expect(outcome.error!.message).toMatch(
    /^verify stopped: shard "shard1" did not answer (a COPY it reads within 1500 ms \(copyIdleTimeoutMillis, --copy-idle-timeout-ms\)|a statement \(".*"\) within 1000 ms \(statementTimeoutMillis, --statement-timeout-ms\)), and a new connection to it failed too \(no answer to the (login|question) in 1[05]00 ms\): the shard is frozen, overloaded or unreachable\. .*run verify again once it answers \(if it is only slow, give it longer with --[a-z-]+\)\.$/,
  );
  expect(failedAfterMillis).toBeLessThan(7500);
  // Once it answers, verify runs through.
  expect(await verifyShards({ catalog: f.catalogUrl, tables: WITH_EVENTS })).toMatchObject({ ok: true, misplaced: [], error: null });
}, 120_000);
