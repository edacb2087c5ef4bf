/**
 * Move records are saved over the revision their command read (or over that command's own earlier
 * save). Before, a save was a plain update: one held on the wire past its command's deadline
 * committed whenever its bytes arrived, over whatever a later command had saved since (the move
 * put back to an older phase), and two commands acting on one move overwrote each other silently.
 * The catalog is real; a loopback proxy holds a save's bytes, or drops its answer.
 */
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { CatalogPool, catalogDeadlines } from '../../../src/admin/catalog-connections';
import { MoveStore } from '../../../src/admin/mover/move-store';
import type { MoveRecord } from '../../../src/admin/mover/move-record';
import { ErrorCodes } from '../../../src/kernel/errors';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { directPool } from '../../support/direct-pool';
import { until } from '../replication/replication-fault-fixture';

const SCHEMA = 'kysely_scale';
const TABLES = [{ name: 'users', keyColumn: 'id' }];
const BATCH = { index: 0, source: 'shard0', target: 'shard1', slots: [1, 2, 3] };

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
  proxy.stalled = false;
  const pool = directPool({ connectionString: catalogUrl });
  await pool.query(`update ${SCHEMA}.move set status = 'aborted' where status = 'open'`);
  await pool.end();
});

afterAll(async () => {
  await direct?.end();
  await proxy?.close();
  await cluster?.stop();
});

/** A store whose connections go through the proxy, with 300 ms statement deadlines, under its own application name. */
function proxiedStore(applicationName: string): { store: MoveStore; pool: CatalogPool } {
  const url = new URL(catalogUrl);
  url.port = String(proxy.port);
  const pool = new CatalogPool(url.toString(), catalogDeadlines({ statementTimeoutMillis: 300, connectionTimeoutMillis: 1000 }), applicationName);
  return { store: new MoveStore(pool, SCHEMA), pool };
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
