/**
 * The cutover's claim (sent beside raising the fence, settled before the source switches) whose
 * catalog connection is reset just after its bytes passed: it commits unseen, its resend is refused (the first attempt
 * is in), and the read that would say so breaks too (review 70, D1). Before, that save failed as
 * `record-changed` although no other command existed; the cutover's caller took it for another
 * command owning the move and skipped its back-out, so the source went on requiring a version
 * nobody would publish and refused every app statement until an operator acted. Now the save fails
 * as `save-unconfirmed` (review 73; before, the bare socket error, `Error: read ECONNRESET`, was the
 * command's error and the move's last error): the mover backs out (its back-out's claim lands, over
 * its own save), and every row is served at the latest version. Shards, catalog and proxy are real.
 */
import { startMoverFixture, TABLES, type MoverFixture } from './mover-fixture';
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { MoveStore } from '../../../src/admin/mover/move-store';
import { TOPOLOGY_CATALOG_DEFAULTS } from '../../../src/admin/topology-catalog';
import { directPool } from '../../support/direct-pool';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy';
import { latestTopology, usersAtLatest } from './served-rows';

let f: MoverFixture;
let proxy: TcpProxy;
beforeAll(async () => {
  f = await startMoverFixture('store_retry_cutover', 2);
  proxy = await startTcpProxy(Number(new URL(f.catalogUrl).port));
}, 60_000);
afterAll(async () => {
  await proxy?.close();
  await f?.close();
});

/** The open move's batch phases and last error, as the catalog holds them. */
async function openMove(): Promise<{ phases: string[]; error: string | null }> {
  const pool = directPool({ connectionString: f.catalogUrl, max: 1 });
  try {
    const move = await new MoveStore(pool, TOPOLOGY_CATALOG_DEFAULTS.schema).open();
    return { phases: (move?.batches ?? []).map((b) => b.phase), error: move?.error ?? null };
  } finally {
    await pool.end();
  }
}

test('the claim of a cutover commits unseen, its resend is refused and the read after it breaks: not taken for another command, the cutover is backed out and every row is served', async () => {
  const v1 = await f.init(2, 64);
  await f.seed(v1, 0, 200);
  const via = new URL(f.catalogUrl);
  via.port = String(proxy.port);
  let claim: Promise<void> | undefined;
  let read: Promise<void> | undefined;
  const result = await moveSlots({
    catalog: via.toString(),
    slots: '0-15',
    to: 'shard1',
    tables: TABLES,
    hook: (_batch, at) => {
      if (at !== 'claiming' || claim !== undefined) return;
      // The claim's connection breaks just after its bytes pass (it commits, its answer is lost);
      // the read after its refused resend breaks before its bytes pass.
      claim = proxy.resetOn('update "kysely_scale".move set status', { after: true });
      read = proxy.resetOn('and writer = $2 and writer_seq >= $3');
    },
  });
  await claim;
  await read;
  // Backed out: nothing published, no shard requires an unpublished version, the batch back to `copied`.
  const latest = await latestTopology(f.catalogUrl);
  expect(latest.version).toBe(v1.version);
  for (const pool of f.pools) {
    const { rows } = await pool.query<{ required_version: number }>('select required_version from kysely_scale.shard_guard');
    expect(rows[0]!.required_version).toBeLessThanOrEqual(latest.version);
  }
  expect((await openMove()).phases).toEqual(['copied']);
  expect(await usersAtLatest(f)).toBe(200);
  // The save failed as unconfirmed (its read's connection reset), not record-changed: coded, the catalog named.
  expect(result).toMatchObject({ ok: false, status: 'open', error: { code: 'E_MOVE_FAILED', context: { reason: 'save-unconfirmed', step: 'read', causeCode: 'ECONNRESET', catalog: via.toString() } } });
  expect(result.error?.message).toMatch(/whether that save is in is unknown.*run `status`.*resume or abort/);
  expect((await openMove()).error).toBe(result.error?.message); // what `moves` and `status` show as its last error
  // And the move resumes to the end.
  const resumed = await resumeMove({ catalog: f.catalogUrl });
  expect(resumed.error).toBeNull();
  expect(resumed.status).toBe('done');
  expect((await latestTopology(f.catalogUrl)).shardForSlot(0).id).toBe('shard1');
  expect(await usersAtLatest(f)).toBe(200);
}, 120_000);
