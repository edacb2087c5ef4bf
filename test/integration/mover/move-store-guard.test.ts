/**
 * Move records are saved over the revision their command read (or over that command's own earlier
 * save). Before, a save was a plain update: one held on the wire past its command's deadline
 * committed whenever its bytes arrived, over whatever a later command had saved since (the move
 * put back to an older phase), and two commands acting on one move overwrote each other silently.
 * The catalog is real; a loopback proxy holds a save's bytes, or drops its answer.
 *
 * A save whose connection breaks under it is sent once more, as the same save (same writer_seq).
 * Before, it failed (the claim before a target's switch or a table copy's commit with it); a first
 * version of the retry (e7db242, reverted) sent it as a later save, which put the record back to
 * older state over a later save of the same command, counted a save that had committed unseen
 * twice, and made that later save, sent before the retry but arriving after it, fail as
 * `record-changed` (review 67). Then (review 70): the resend went on the pool's other idle
 * connection, dead from the same failover; a connect that failed (a proxy that accepts and closes)
 * was retried too; a read that failed after a refused resend was reported as `record-changed` (see
 * move-store-retry-cutover.test.ts for what that did to a cutover); the save kept the highest
 * revision answered, stale after the catalog lost acknowledged saves, and overwrote another
 * command's claim; and a save could take three deadlines. Then (review 73): a command's first save
 * (a resume's or abort's claim) and its publish before any answered save were guarded by the
 * revision number alone, which another command's saves reach again after the catalog lost
 * acknowledged saves (the claim overwrote an abort's rolled-back record); and a save whose resend or
 * read failed threw the bare socket error (`Error: read ECONNRESET` as the move's last error). The
 * proxy resets a connection before or just after a save's bytes pass, holds them, closes new
 * connections, or fails every open connection over; each save's `error` text is its marker. An
 * injected clock times a save's budget.
 */
import { createServer } from 'node:net';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { CatalogPool, catalogDeadlines } from '../../../src/admin/catalog-connections';
import { MoveStore, isRecordChanged } from '../../../src/admin/mover/move-store';
import type { MoveRecord } from '../../../src/admin/mover/move-record';
import { ErrorCodes } from '../../../src/kernel/errors';
import { ManualClock } from '../../../src/kernel/clock';
import { startTcpProxy, type HeldChunk, type TcpProxy } from '../../support/tcp-proxy';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

const SCHEMA = 'kysely_scale';
const TABLES = [{ name: 'users', keyColumn: 'id' }];
const BATCH = { index: 0, source: 'shard0', target: 'shard1', slots: [1, 2, 3] };
const PASSWORD = 'store-secret-pw';

let cluster: TestCluster;
let catalogUrl: string;
let proxy: TcpProxy;
let direct: CatalogPool;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  const [shard] = (await cluster.createDatabase('move_store_guard')) as [TestShardUrls];
  catalogUrl = shard.primaryUrl;
  proxy = await startTcpProxy(Number(new URL(catalogUrl).port));
  direct = new CatalogPool(catalogUrl, catalogDeadlines({}), 'store test');
  await new MoveStore(direct, SCHEMA).install();
}, 60_000);

afterEach(async () => {
  proxy.clear(); // a rule a failed test left armed must not act on the next test's statements
  const pool = directPool({ connectionString: catalogUrl });
  await pool.query(`update ${SCHEMA}.move set status = 'aborted' where status = 'open'`);
  await pool.end();
});

afterAll(async () => {
  await direct?.end();
  await proxy?.close();
  await cluster?.stop();
});

/**
 * A store whose connections go through the proxy (or `port`), with 300 ms statement deadlines (or
 * `statementTimeoutMillis`) and 1 s connect deadlines, under its own application name; its saves'
 * budgets timed by `clock` (the system's by default). Its URL carries {@link PASSWORD} (the test
 * servers trust loopback, so it is never asked for): errors must not show it.
 */
function proxiedStore(applicationName: string, statementTimeoutMillis = 300, clock?: ManualClock, port = proxy.port): { store: MoveStore; pool: CatalogPool } {
  const url = new URL(catalogUrl);
  url.port = String(port);
  url.password = PASSWORD;
  const pool = new CatalogPool(url.toString(), catalogDeadlines({ statementTimeoutMillis, connectionTimeoutMillis: 1000 }), applicationName);
  return { store: new MoveStore(pool, SCHEMA, clock === undefined ? {} : { clock }), pool };
}

async function stored(id: number): Promise<MoveRecord> {
  return (await new MoveStore(direct, SCHEMA).get(id))!;
}

async function backends(applicationName: string): Promise<number> {
  const { rows } = await direct.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where application_name = $1', [applicationName]);
  return rows[0]!.n;
}

test('a second command saving a move the first one saved since it read it is stopped, and nothing of its save lands', async () => {
  const first = new MoveStore(direct, SCHEMA);
  const move = await first.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  const seenBySecond = (await new MoveStore(direct, SCHEMA).open())!;
  move.batches[0]!.phase = 'capturing';
  await first.save(move);
  seenBySecond.batches[0]!.phase = 'aborted';
  const refused = await new MoveStore(direct, SCHEMA).save(seenBySecond).catch((e: unknown) => e);
  expect(refused).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'record-changed' } });
  expect((await stored(move.id)).batches[0]!.phase).toBe('capturing');
  // The first command goes on saving over its own revision.
  move.batches[0]!.phase = 'copied';
  await first.save(move);
  expect((await stored(move.id)).batches[0]!.phase).toBe('copied');
});

test('a save held on the wire past its deadline that arrives after a later command saved does not put the move back', async () => {
  const { store: late, pool } = proxiedStore('store late save');
  try {
    const move = await late.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    proxy.stalled = true; // the save's bytes wait in the proxy
    move.batches[0]!.phase = 'capturing';
    const gaveUp = await late.save(move).catch((e: unknown) => e);
    expect(gaveUp).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE });
    // Another command (resume, after the operator lock passed to it) reads the move and saves it further.
    const resume = new MoveStore(direct, SCHEMA);
    const read = (await resume.get(move.id))!;
    expect(read.batches[0]!.phase).toBe('planned');
    read.batches[0]!.phase = 'copied';
    await resume.save(read);
    proxy.stalled = false; // the held save reaches the server now, and its server process ends after it
    await until('the held save run', async () => (await backends('store late save')) === 0, 10_000);
    expect((await stored(move.id)).batches[0]!.phase).toBe('copied');
  } finally {
    await pool.end();
  }
}, 30_000);

test("a save whose answer never came but that committed does not stop its own command's next save", async () => {
  const { store, pool } = proxiedStore('store own save');
  try {
    const move = await store.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    proxy.stallReplies(); // the open connection's answers are dropped; new connections pass both ways
    move.batches[0]!.phase = 'capturing';
    expect(await store.save(move).catch((e: unknown) => e)).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE });
    expect((await stored(move.id)).batches[0]!.phase).toBe('capturing'); // it did commit
    move.batches[0]!.phase = 'copied';
    await store.save(move); // over its own save: accepted
    expect((await stored(move.id)).batches[0]!.phase).toBe('copied');
  } finally {
    await pool.end();
  }
}, 30_000);

/** Sets the move's next save apart: its phase, and its `error` text (`marker`, what the proxy's rules look for). */
function next(move: MoveRecord, phase: MoveRecord['batches'][number]['phase'], marker: string): MoveRecord {
  move.batches[0]!.phase = phase;
  move.error = marker;
  return move;
}

/**
 * Runs `body` with a store whose connections go through the proxy (1 s connect and 5 s statement
 * deadlines: a save's budget is {@link BUDGET}, timed by `clock` when given) and a move it created
 * (`revision` as stored); the store's pool ends after.
 */
async function withMove(applicationName: string, body: (store: MoveStore, move: MoveRecord, revision: number, pool: CatalogPool) => Promise<void>, clock?: ManualClock): Promise<void> {
  const { store, pool } = proxiedStore(applicationName, 5000, clock);
  try {
    const move = await store.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    await body(store, move, (await stored(move.id)).revision, pool);
  } finally {
    await pool.end();
  }
}

/** A save's budget in {@link withMove}: 1 s to connect, 5 s for the statement, 500 ms grace each. */
const BUDGET = 1000 + 5000 + 2 * 500;

/** Text of the read after a refused save (its marker). */
const READ = 'and writer = $2 and writer_seq >= $3';

/** The move as stored (and as its command knows it) holds the save marked `marker`, at `revision`. */
async function expectSaved(move: MoveRecord, revision: number, phase: MoveRecord['batches'][number]['phase'], marker: string): Promise<void> {
  expect(await stored(move.id)).toMatchObject({ revision, batches: [{ phase }], error: marker });
  expect(move.revision).toBe(revision);
}

/** A save's outcome: undefined, or what it threw. */
function saving(store: MoveStore, move: MoveRecord): Promise<unknown> {
  return store.save(move).then(
    () => undefined,
    (e: unknown) => e,
  );
}

/**
 * `failed` is a save of `move` whose outcome is unknown after `step` failed with `cause`: coded,
 * naming the catalog with its password hidden, saying what to do, the socket's error as its cause.
 */
function expectUnconfirmed(failed: unknown, move: MoveRecord, pool: CatalogPool, step: string, cause: Record<string, unknown>): void {
  expect(failed).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'save-unconfirmed', step, catalog: pool.redactedUrl }, cause });
  expect(pool.redactedUrl).toContain(':***@');
  const { message } = failed as Error;
  expect(message).toContain(pool.redactedUrl);
  expect(message).toContain('unknown');
  expect(message).toContain('run `status`');
  expect(message).toContain('resume or abort');
  expect(`${message} ${JSON.stringify((failed as { context: unknown }).context)}`).not.toContain(PASSWORD);
  expect(isRecordChanged(failed)).toBe(false);
}

/** Waits for `reached` (the proxy caught a chunk); fails at once when `pending` returned first (the code under test sent nothing more). */
async function caught(reached: Promise<void>, pending: Promise<unknown>): Promise<void> {
  const first = await Promise.race([reached.then(() => 'caught' as const), pending.then((outcome) => ({ outcome }))]);
  if (first !== 'caught') throw new Error(`the save returned (${String(first.outcome)}) before the proxy caught the bytes the test waits for`);
}

/** Sends the save marked `marker` of `move` at `phase`, its bytes held in the proxy once they get there. */
async function sendHeld(store: MoveStore, move: MoveRecord, phase: MoveRecord['batches'][number]['phase'], marker: string): Promise<{ held: HeldChunk; outcome: Promise<unknown> }> {
  const held = proxy.holdOn(marker);
  const outcome = saving(store, next(move, phase, marker));
  await caught(held.reached, outcome);
  return { held, outcome };
}

/**
 * Sends the save marked `marker` of `move` at `phase`; its connection is reset just after its bytes
 * pass. Returns once it committed unseen, its resend held in the proxy.
 */
async function sendCommittedUnseen(store: MoveStore, move: MoveRecord, phase: MoveRecord['batches'][number]['phase'], marker: string): Promise<{ resend: HeldChunk; outcome: Promise<unknown> }> {
  const reset = proxy.resetOn(marker, { after: true });
  const resend = proxy.holdOn(marker);
  const outcome = saving(store, next(move, phase, marker));
  await caught(reset, outcome);
  await until('the first attempt committed', async () => (await stored(move.id)).error === marker);
  await caught(resend.reached, outcome);
  return { resend, outcome };
}

describe('a save whose catalog connection breaks under it', () => {
  test('reset before its bytes reach the catalog: sent once more, it lands', () =>
    withMove('store reset before', async (store, move, revision) => {
      const reset = proxy.resetOn('reset before A');
      expect(await saving(store, next(move, 'capturing', 'reset before A'))).toBeUndefined();
      await reset;
      await expectSaved(move, revision + 1, 'capturing', 'reset before A');
    }), 30_000);

  test('reset just after its bytes passed (committed, its answer lost): sent once more, it is found in and counted once', () =>
    withMove('store reset after', async (store, move, revision) => {
      // The first attempt commits unseen before the resend reaches the catalog.
      const { resend, outcome: a } = await sendCommittedUnseen(store, move, 'capturing', 'reset after A');
      resend.release();
      expect(await a).toBeUndefined();
      await expectSaved(move, revision + 1, 'capturing', 'reset after A');
    }), 30_000);

  test('its first attempt lost, a later save of the same command commits before the resend: the resend is obsolete, the record keeps the later save', () =>
    withMove('store resend obsolete', async (store, move, revision) => {
      const { held: first, outcome: a } = await sendHeld(store, move, 'capturing', 'obsolete A');
      const resend = proxy.holdOn('obsolete A');
      first.reset(); // it never reached the catalog
      await caught(resend.reached, a);
      // The later save (a table copy's claim beside a live progress save) commits.
      expect(await saving(store, next(move, 'copied', 'obsolete B'))).toBeUndefined();
      resend.release();
      expect(await a).toBeUndefined();
      await expectSaved(move, revision + 1, 'copied', 'obsolete B');
    }), 30_000);

  test('review 67: a later save of the same command sent before the resend but arriving after it is not refused, and the record holds it', () =>
    withMove('store resend overtaken', async (store, move, revision) => {
      const { held: first, outcome: a } = await sendHeld(store, move, 'capturing', 'overtaken A');
      const { held: later, outcome: b } = await sendHeld(store, move, 'copied', 'overtaken B');
      first.reset(); // A's first attempt lost: its resend goes ahead of B
      expect(await a).toBeUndefined();
      expect((await stored(move.id)).revision).toBe(revision + 1); // the resend is in, B still held
      later.release();
      expect(await b).toBeUndefined();
      await expectSaved(move, revision + 2, 'copied', 'overtaken B');
    }), 30_000);

  test('another command saving the move in between still makes the resend fail with record-changed, its save kept', async () => {
    const other = new MoveStore(direct, SCHEMA);
    // Lost before the catalog saw it.
    await withMove('store resend other', async (store, move) => {
      const { held: first, outcome: a } = await sendHeld(store, move, 'capturing', 'other A');
      await other.save(next((await other.get(move.id))!, 'aborted', 'other wrote'));
      first.reset();
      expect(await a).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'record-changed' } });
      expect(await stored(move.id)).toMatchObject({ batches: [{ phase: 'aborted' }], error: 'other wrote' });
      await direct.query(`update ${SCHEMA}.move set status = 'aborted' where id = $1`, [move.id]);
    });
    // Committed unseen, then another command saved: the resend is refused and overwrites nothing.
    await withMove('store resend other 2', async (store, move) => {
      const { resend, outcome: c } = await sendCommittedUnseen(store, move, 'capturing', 'other C');
      await other.save(next((await other.get(move.id))!, 'aborted', 'other wrote again'));
      resend.release();
      expect(await c).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'record-changed' } });
      expect(await stored(move.id)).toMatchObject({ batches: [{ phase: 'aborted' }], error: 'other wrote again' });
    });
  }, 30_000);

  test('review 70: a failover behind the catalog address, a second connection idle in the pool (both dead, unnoticed): the resend goes on a new connection and lands', () =>
    withMove('store failover', async (store, move, revision, pool) => {
      // Two connections in the pool, as a table copy's claim beside a live progress save leaves it.
      const sessions = [await pool.connect(), await pool.connect()];
      for (const session of sessions) session.release();
      const accepted = proxy.accepted;
      proxy.failover();
      expect(await saving(store, next(move, 'capturing', 'failover A'))).toBeUndefined();
      await expectSaved(move, revision + 1, 'capturing', 'failover A');
      expect(proxy.accepted).toBe(accepted + 1); // the resend's: the older idle one was not tried
    }), 30_000);

  test("review 70: committed unseen, its resend refused, and the read after it broken too: the save's outcome is unknown (save-unconfirmed, not record-changed), and the command's next save lands", () =>
    withMove('store read broken', async (store, move, revision, pool) => {
      const { resend, outcome: a } = await sendCommittedUnseen(store, move, 'capturing', 'unconfirmed A');
      const read = proxy.resetOn(READ);
      resend.release();
      const failed = await a;
      await read;
      expectUnconfirmed(failed, move, pool, 'read', { code: 'ECONNRESET' });
      expect(isRecordChanged(failed)).toBe(false);
      expect(await stored(move.id)).toMatchObject({ revision: revision + 1, error: 'unconfirmed A' });
      // A cutover's back-out claims the move next: over its own save, it lands.
      expect(await saving(store, next(move, 'copied', 'unconfirmed B'))).toBeUndefined();
      await expectSaved(move, revision + 2, 'copied', 'unconfirmed B');
    }), 30_000);

  test("review 73: its resend breaks too: save-unconfirmed, naming the catalog (no password), and the command's next save lands", () =>
    withMove('store resend broken', async (store, move, revision, pool) => {
      const first = proxy.resetOn('resend broken A');
      const again = proxy.resetOn('resend broken A');
      const failed = await saving(store, next(move, 'capturing', 'resend broken A'));
      await first;
      await again;
      expectUnconfirmed(failed, move, pool, 'resend', { code: 'ECONNRESET' });
      expect(await stored(move.id)).toMatchObject({ revision, batches: [{ phase: 'planned' }] }); // neither reached the catalog
      expect(await saving(store, next(move, 'copied', 'resend broken B'))).toBeUndefined();
      await expectSaved(move, revision + 1, 'copied', 'resend broken B');
    }), 30_000);

  test('review 73: its resend cannot connect (a proxy that accepts, then closes): save-unconfirmed, one connection attempt for the resend', () =>
    withMove('store resend connect', async (store, move, revision, pool) => {
      const { held, outcome: a } = await sendHeld(store, move, 'capturing', 'resend connect A');
      const accepted = proxy.accepted;
      proxy.closingNew = true;
      held.reset();
      const failed = await a;
      proxy.closingNew = false;
      expectUnconfirmed(failed, move, pool, 'resend-connect', { message: 'Connection terminated unexpectedly' });
      expect(proxy.accepted).toBe(accepted + 1);
      expect(await stored(move.id)).toMatchObject({ revision, batches: [{ phase: 'planned' }] });
    }), 30_000);

  test('its server process terminated while it waited for the row (57P01): sent once more, it lands once', async () => {
    const pool = new CatalogPool(catalogUrl, catalogDeadlines({ statementTimeoutMillis: 10_000, connectionTimeoutMillis: 5000 }), 'store terminated');
    const locker = directPool({ connectionString: catalogUrl, max: 1 });
    const holder = await locker.connect();
    try {
      const store = new MoveStore(pool, SCHEMA);
      const move = await store.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
      const revision = (await stored(move.id)).revision;
      await holder.query('begin');
      await holder.query(`select 1 from ${SCHEMA}.move where id = $1 for update`, [move.id]);
      const a = saving(store, next(move, 'capturing', 'terminated A'));
      let returned = false;
      void a.then(() => (returned = true));
      const waiting = async (): Promise<number[]> => {
        if (returned) throw new Error(`the save returned (${String(await a)}) while the row was locked`);
        const { rows } = await direct.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'store terminated' and wait_event_type = 'Lock'`);
        return rows.map((r) => r.pid);
      };
      await until('the save waits for the row', async () => (await waiting()).length === 1);
      const [pid] = await waiting();
      await direct.query('select pg_terminate_backend($1)', [pid]);
      await until('the resend waits for the row', async () => (await waiting()).some((p) => p !== pid));
      await holder.query('commit');
      expect(await a).toBeUndefined();
      await expectSaved(move, revision + 1, 'capturing', 'terminated A');
    } finally {
      holder.release();
      await locker.end();
      await pool.end();
    }
  }, 30_000);
});

test('a save overtaken by a later save of the same command (no connection broken) is not a conflict', () =>
  withMove('store overtaken', async (store, move, revision) => {
    const { held, outcome: a } = await sendHeld(store, move, 'capturing', 'late A'); // a table copy's claim, say, on a slow connection
    expect(await saving(store, next(move, 'copied', 'early B'))).toBeUndefined(); // a live progress save sent after it, in first
    held.release();
    expect(await a).toBeUndefined();
    await expectSaved(move, revision + 1, 'copied', 'early B');
  }), 30_000);

/**
 * A move that a command (`mine`) saved three times; `promote()` is then a failover to a standby
 * that had replayed only the first save (the row as after it: the other two, acknowledged, lost).
 */
async function savedThrice(): Promise<{ mine: MoveStore; move: MoveRecord; promote(): Promise<void>; promotedRevision: number }> {
  const mine = new MoveStore(direct, SCHEMA);
  const move = await mine.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
  await mine.save(next(move, 'capturing', 'mine 1'));
  const { rows } = await direct.query(`select revision, batches, error, writer, writer_seq from ${SCHEMA}.move where id = $1`, [move.id]);
  const row = rows[0]!;
  await mine.save(next(move, 'copied', 'mine 2'));
  await mine.save(next(move, 'caught-up', 'mine 3'));
  const promote = async (): Promise<void> => {
    await direct.query(`update ${SCHEMA}.move set revision = $2, batches = $3, error = $4, writer = $5, writer_seq = $6 where id = $1`, [move.id, row.revision, JSON.stringify(row.batches), row.error, row.writer, row.writer_seq]);
  };
  return { mine, move, promote, promotedRevision: Number(row.revision) };
}

/** Whether a publish of `store`'s command for `move` would commit now ({@link MoveStore.publishPrecondition}). */
async function publishable(store: MoveStore, move: MoveRecord): Promise<boolean> {
  return (await direct.query<{ ok: boolean }>(`select ${store.publishPrecondition(move).sql} as ok`)).rows[0]!.ok;
}

describe('review 70: a catalog that lost acknowledged saves (an asynchronous standby promoted)', () => {
  test("the command's own save after the loss: its revision is that save's, so another command's claim then stops its next save and publish", async () => {
    const { mine, move, promote, promotedRevision } = await savedThrice();
    await promote();
    await mine.save(next(move, 'caught-up', 'mine 4')); // over its own save: in
    expect(move.revision).toBe(promotedRevision + 1); // not the higher one answered before the loss
    // Its operator lock went with the old primary; another operator's abort claims the move.
    const other = new MoveStore(direct, SCHEMA);
    await other.claim(next((await other.get(move.id))!, 'caught-up', 'other claimed'));
    expect(await publishable(mine, move)).toBe(false);
    expect(await saving(mine, next(move, 'cutover', 'mine 5'))).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { reason: 'record-changed' } });
    expect((await stored(move.id)).error).toBe('other claimed');
  });

  test("another command's saves after the loss bring the revision round to the one this command holds: its next save and publish are still refused", async () => {
    const { mine, move, promote } = await savedThrice();
    expect(await publishable(mine, move)).toBe(true);
    await promote();
    const other = new MoveStore(direct, SCHEMA);
    const read = (await other.get(move.id))!;
    await other.claim(next(read, 'caught-up', 'other claimed'));
    await other.save(next(read, 'aborted', 'other saved'));
    expect((await stored(move.id)).revision).toBe(move.revision); // the same number, another command's save
    expect(await publishable(mine, move)).toBe(false);
    expect(await saving(mine, next(move, 'cutover', 'mine 4'))).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { reason: 'record-changed' } });
    expect((await stored(move.id)).error).toBe('other saved');
  });
});

describe('review 73: a first save (a claim) or a publish before any answered save, after the catalog lost acknowledged saves', () => {
  test("a resume that read the move before the loss claims it after an abort claimed and saved it up to the same revision: refused, the abort's record kept", async () => {
    const { move, promote } = await savedThrice();
    const resume = new MoveStore(direct, SCHEMA);
    const readByResume = (await resume.get(move.id))!; // on the old primary
    await promote(); // the move's second and third saves lost
    // On the new primary an abort takes the operator lock, claims the move and rolls the batch back.
    const abort = new MoveStore(direct, SCHEMA);
    const readByAbort = (await abort.get(move.id))!;
    await abort.claim(next(readByAbort, 'copied', 'abort claimed'));
    await abort.save(next(readByAbort, 'aborted', 'abort rolled back'));
    expect((await stored(move.id)).revision).toBe(readByResume.revision); // the same number, the abort's save
    // The resume's claim, from its read before the loss, reaches the new primary now.
    expect(await saving(resume, next(readByResume, 'caught-up', 'resume claimed'))).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'record-changed' } });
    expect(await stored(move.id)).toMatchObject({ batches: [{ phase: 'aborted' }], error: 'abort rolled back' });
  });

  test("an abort that read the move before the loss claims it after the mover's own saves after the loss reached the same revision: refused, the mover's record kept", async () => {
    const { mine, move, promote } = await savedThrice();
    const abort = new MoveStore(direct, SCHEMA);
    const readByAbort = (await abort.get(move.id))!; // 'caught-up', on the old primary
    await promote();
    // The mover, until its heartbeat finds its lock gone, saves twice more on the new primary.
    await mine.save(next(move, 'cutover', 'mine 4'));
    await mine.save(next(move, 'published', 'mine 5'));
    expect((await stored(move.id)).revision).toBe(readByAbort.revision);
    expect(await saving(abort, next(readByAbort, 'caught-up', 'abort claimed'))).toMatchObject({ code: ErrorCodes.MOVE_FAILED, context: { moveId: move.id, reason: 'record-changed' } });
    expect(await stored(move.id)).toMatchObject({ batches: [{ phase: 'published' }], error: 'mine 5' });
  });

  test('a publish before any save of the command was answered, after the loss and another command reaching the same revision: refused', async () => {
    const { move, promote } = await savedThrice();
    const resume = new MoveStore(direct, SCHEMA);
    const readByResume = (await resume.get(move.id))!;
    expect(await publishable(resume, readByResume)).toBe(true); // as read
    await promote();
    const abort = new MoveStore(direct, SCHEMA);
    const readByAbort = (await abort.get(move.id))!;
    await abort.claim(next(readByAbort, 'copied', 'abort claimed'));
    await abort.save(next(readByAbort, 'aborted', 'abort rolled back'));
    expect((await stored(move.id)).revision).toBe(readByResume.revision);
    expect(await publishable(resume, readByResume)).toBe(false);
  });

  test('a row saved before the guard (no writer, writer_seq 0) is claimed and published over as read', async () => {
    const move = await new MoveStore(direct, SCHEMA).create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    await direct.query(`update ${SCHEMA}.move set writer = null, writer_seq = 0, revision = 3 where id = $1`, [move.id]);
    const resume = new MoveStore(direct, SCHEMA);
    const read = (await resume.get(move.id))!;
    expect(await publishable(resume, read)).toBe(true);
    expect(await saving(resume, next(read, 'capturing', 'old row claimed'))).toBeUndefined();
    expect(await stored(move.id)).toMatchObject({ revision: 4, batches: [{ phase: 'capturing' }], error: 'old row claimed' });
  });

  test('a record saved by one store is saved over by another store as last saved', async () => {
    const first = new MoveStore(direct, SCHEMA);
    const move = await first.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    await first.save(next(move, 'capturing', 'first saved'));
    const second = new MoveStore(direct, SCHEMA);
    expect(await publishable(second, move)).toBe(true);
    expect(await saving(second, next(move, 'copied', 'second saved'))).toBeUndefined();
    expect((await stored(move.id)).error).toBe('second saved');
  });
});

describe('review 70: one budget for the whole save (a connection and a statement), its resend and read included', () => {
  test('its connection breaks with 1 ms of the budget left: the resend gets that 1 ms, then the save fails with E_CATALOG_UNAVAILABLE', () => {
    const clock = new ManualClock();
    return withMove(
      'store budget resend',
      async (store, move, revision) => {
        const { held: first, outcome: a } = await sendHeld(store, move, 'capturing', 'budget A');
        clock.advance(BUDGET - 1); // the catalog was slow to take the row
        const resend = proxy.holdOn('budget A');
        first.reset();
        await caught(resend.reached, a);
        clock.advance(1);
        expect(await a).toMatchObject({
          code: ErrorCodes.CATALOG_UNAVAILABLE,
          context: { waitedFor: 'a move-record save', millis: BUDGET },
          message: expect.stringContaining('connectionTimeoutMillis + statementTimeoutMillis + 2 × 500 ms'),
        });
        resend.reset();
        expect(await stored(move.id)).toMatchObject({ revision, batches: [{ phase: 'planned' }] });
      },
      clock,
    );
  }, 30_000);

  test('committed unseen, its resend refused with 1 ms of the budget left: the read gets that 1 ms, then E_CATALOG_UNAVAILABLE (not record-changed)', () => {
    const clock = new ManualClock();
    return withMove(
      'store budget read',
      async (store, move, revision) => {
        const { resend, outcome: a } = await sendCommittedUnseen(store, move, 'capturing', 'budget B');
        clock.advance(BUDGET - 1);
        const read = proxy.holdOn(READ);
        resend.release();
        await caught(read.reached, a);
        clock.advance(1);
        expect(await a).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE, context: { waitedFor: 'a move-record save', millis: BUDGET } });
        read.reset();
        // The first attempt is in; the command's next save lands over it.
        expect(await saving(store, next(move, 'copied', 'budget C'))).toBeUndefined();
        await expectSaved(move, revision + 2, 'copied', 'budget C');
      },
      clock,
    );
  }, 30_000);
});

describe('a catalog that cannot be reached or does not answer in time is not asked twice', () => {
  test('a statement past its deadline fails with E_CATALOG_UNAVAILABLE, no resend', async () => {
    const { store, pool } = proxiedStore('store statement timeout');
    try {
      const move = await store.create('move', TABLES, [{ ...BATCH, phase: 'planned' }]); // its connection stays in the pool
      const accepted = proxy.accepted;
      const stalled = proxy.stallOn('timeout A');
      expect(await saving(store, next(move, 'capturing', 'timeout A'))).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE, option: 'statementTimeoutMillis' });
      await stalled;
      expect(proxy.accepted).toBe(accepted);
      // The held save reaches the catalog now and runs (its connection then ends): before the next test aborts the move.
      proxy.stalled = false;
      await until('the held save run', async () => (await backends('store statement timeout')) === 0, 10_000);
    } finally {
      await pool.end();
    }
  }, 30_000);

  test('a catalog that cannot be reached fails with E_CATALOG_UNAVAILABLE, one connection attempt', async () => {
    const move = await new MoveStore(direct, SCHEMA).create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    const { store, pool } = proxiedStore('store unreachable'); // no connection yet
    try {
      proxy.stalled = true; // new connections are accepted and never answered
      const accepted = proxy.accepted;
      expect(await saving(store, next(move, 'capturing', 'unreachable A'))).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE, option: 'connectionTimeoutMillis' });
      expect(proxy.accepted).toBe(accepted + 1);
    } finally {
      await pool.end();
    }
  }, 30_000);

  test('review 70: a catalog behind a proxy that accepts, then closes (nothing listens behind it): one connection attempt', async () => {
    // A port nothing listens on, behind a proxy that accepts first (as HAProxy or a virtual IP does).
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const front = await startTcpProxy(deadPort);
    const move = await new MoveStore(direct, SCHEMA).create('move', TABLES, [{ ...BATCH, phase: 'planned' }]);
    const { store, pool } = proxiedStore('store accepts and closes', 300, undefined, front.port);
    try {
      expect(await saving(store, next(move, 'capturing', 'closed A'))).toMatchObject({ message: 'Connection terminated unexpectedly' });
      expect(front.accepted).toBe(1);
    } finally {
      await pool.end();
      await front.close();
    }
  }, 30_000);
});
