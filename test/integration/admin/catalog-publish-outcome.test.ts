/**
 * A publish whose answer never comes. With 1b11861 a publish past its deadline crashed the
 * process (the dropped connection's 'error' arrived on a checked-out client nobody listened on,
 * while publish() awaited a rollback over it), and reported a failure although the publish could
 * still commit later (its bytes held on the wire, or by a frozen server). Now the process lives,
 * and before reporting, a fresh connection ends the publish's server process and reads whether the
 * version committed: committed → published; absent → a retryable CatalogTimeoutError (nothing
 * published, ever); the catalog unreachable → PublishOutcomeUnknownError (outcomeUnknown).
 */
import { resolve } from 'node:path';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyCatalog, PublishOutcomeUnknownError } from '../../../src/admin/topology-catalog';
import { ErrorCodes } from '../../../src/kernel/errors';
import { runTsxScript, srcModule } from '../../support/tsx-script';
import { freeze, until } from '../replication/replication-fault-fixture';
import { SECRET, withPassword } from './admin-cli-process';
import { within } from '../mover/within-deadline';
import { withPg } from '../../support/postgres-replication';

let cluster: TestCluster;
let shard: TestShardUrls;
let catalogUrl: string;
let v1: Topology;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  // The catalog has a server of its own, so freezing it freezes nothing else.
  cluster = await startTestCluster({ shards: 1, backend: 'local' });
  [shard] = (await cluster.createDatabase('catalog_publish')) as [TestShardUrls];
  catalogUrl = withPassword(shard.primaryUrl);
  v1 = createTopology({ shards: [{ id: 'shard0', primary: shard.primaryUrl }] });
  const catalog = new TopologyCatalog({ url: catalogUrl });
  await catalog.install();
  await catalog.publish(v1, 'init');
  await catalog.close();
}, 60_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await cluster?.stop();
});

async function latestVersion(): Promise<number> {
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    return (await catalog.latest())!.version;
  } finally {
    await catalog.close();
  }
}

/** A whole process publishing through the proxy with the `hold` given: what publish() did, and whether the process lived. */
function publishThroughProxy(hold: 'requests' | 'replies') {
  const source = `
    import { Client } from ${JSON.stringify(require.resolve('pg'))};
    import { TopologyCatalog } from ${srcModule('admin/topology-catalog.ts')};
    import { startCatalogProxy } from ${JSON.stringify(resolve(__dirname, 'catalog-proxy.ts'))};
    async function main(): Promise<void> {
      const direct = ${JSON.stringify(catalogUrl)};
      const proxy = await startCatalogProxy(Number(new URL(direct).port));
      const catalog = new TopologyCatalog({ url: proxy.via(direct), statementTimeoutMillis: 1000, connectionTimeoutMillis: 2000 });
      const latest = (await catalog.latest())!; // a pooled connection through the proxy
      proxy.${hold === 'requests' ? 'holdRequestsOn' : 'holdRepliesOn'}('in exclusive mode');
      const started = performance.now();
      const outcome = await catalog.publish(latest.withSlotsMoved([0], 'shard0'), 'held').then(
        () => ({ published: true }),
        (e: any) => ({ published: false, name: e.name, code: e.code, outcomeUnknown: e.outcomeUnknown, message: e.message }),
      );
      const millis = Math.round(performance.now() - started);
      // The held bytes go on now (the server process that was to run them is gone, if it was ended).
      const { delivered } = await proxy.release();
      // Until no server process of the catalog's pool is left (one that got the held statement runs it, then ends).
      const probe = new Client({ connectionString: direct, application_name: 'probe' });
      await probe.connect();
      let left = -1;
      for (let i = 0; i < 500 && left !== 0; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 10));
        left = (await probe.query("select count(*)::int as n from pg_stat_activity where application_name = 'kysely-scale catalog'")).rows[0].n;
      }
      await probe.end();
      const check = new TopologyCatalog({ url: direct });
      const after = (await check.latest())!.version;
      await check.close();
      await catalog.close();
      await proxy.close();
      console.log(JSON.stringify({ before: latest.version, after, millis, delivered, left, tripped: proxy.tripped, outcome }));
    }
    void main();
  `;
  return runTsxScript(source, 30_000);
}

test('a publish whose statement is held on the wire past its deadline: the process lives, the publish fails retryable (nothing published), and the held statement never commits', async () => {
  const run = await publishThroughProxy('requests');
  console.log(JSON.stringify({ heldRequest: run.stdout.trim(), code: run.code, stderr: run.stderr.slice(0, 500) }));
  // 1b11861: "Unhandled 'error' event", exit code 1.
  expect(run.stderr).not.toContain("Unhandled 'error' event");
  expect(run.code).toBe(0);
  const result = JSON.parse(run.stdout.trim().split('\n').pop()!);
  expect(result.tripped).toBe(1);
  expect(result.outcome).toMatchObject({ published: false, name: 'CatalogTimeoutError', code: ErrorCodes.CATALOG_UNAVAILABLE });
  expect(result.outcome.outcomeUnknown).toBeUndefined();
  expect(result.outcome.message).toContain(`did not answer the publish of topology version ${result.before + 1} within 1500 ms (statementTimeoutMillis + 500 ms); its server process was ended`);
  expect(result.outcome.message).toContain('nothing was published (publish again)');
  expect(result.outcome.message).not.toContain(SECRET);
  // The deadline, then the check on a fresh connection (a few round trips on loopback).
  expect(result.millis).toBeGreaterThanOrEqual(1490);
  expect(result.millis).toBeLessThan(2500);
  // The server process that would have run it was ended: the held bytes had nowhere to go, and nothing committed.
  expect(result.left).toBe(0);
  expect(result.after).toBe(result.before);
}, 60_000);

test('a publish that commits but whose answer is held on the wire: publish() returns (the check finds the version committed)', async () => {
  const run = await publishThroughProxy('replies');
  console.log(JSON.stringify({ heldReply: run.stdout.trim(), code: run.code, stderr: run.stderr.slice(0, 500) }));
  expect(run.stderr).not.toContain("Unhandled 'error' event");
  expect(run.code).toBe(0);
  const result = JSON.parse(run.stdout.trim().split('\n').pop()!);
  expect(result.tripped).toBe(1);
  // 1b11861 reported this committed publish as failed (ETIMEDOUT): a mover would have reverted a published cutover.
  expect(result.outcome).toEqual({ published: true });
  expect(result.after).toBe(result.before + 1);
  expect(result.millis).toBeGreaterThanOrEqual(1490);
  expect(result.millis).toBeLessThan(2500);
}, 60_000);

test('a publish to a catalog that freezes (SIGSTOP) mid-publish: PublishOutcomeUnknownError once the check cannot connect either; after SIGCONT the frozen server commits it', async () => {
  const catalog = new TopologyCatalog({ url: catalogUrl, statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  closers.push(() => catalog.close());
  const latest = (await catalog.latest())!;
  const next = latest.withSlotsMoved([1], 'shard0');
  const thaw = freeze(cluster.shards[0]!.primary);
  let error: unknown;
  let millis: number;
  try {
    const started = performance.now();
    error = await within(10_000, 'a publish to a frozen catalog', catalog.publish(next, 'frozen').then(() => undefined, (e: unknown) => e));
    millis = performance.now() - started;
  } finally {
    thaw();
  }
  expect(error).toBeInstanceOf(PublishOutcomeUnknownError);
  const unknown = error as PublishOutcomeUnknownError;
  expect(unknown).toMatchObject({ outcomeUnknown: true, code: ErrorCodes.CATALOG_UNAVAILABLE, version: next.version });
  expect(unknown.context).toMatchObject({ version: next.version });
  expect(unknown.message).toContain(`did not confirm the publish of topology version ${next.version} (no answer within 1500 ms)`);
  expect(unknown.message).toContain('its outcome could not be learnt (asked on a fresh connection, it did not answer while connecting within 1000 ms (connectionTimeoutMillis))');
  expect(unknown.message).not.toContain(SECRET);
  // The publish's deadline (1000 + 500 ms), then the check's connection attempt (1000 ms).
  expect(millis).toBeGreaterThanOrEqual(2450);
  expect(millis).toBeLessThan(4500);
  // Why "unknown" was the only honest answer: the frozen server had the statement, and runs it once thawed.
  const committedAfterThawMillis = await until(`version ${next.version} committed after SIGCONT`, async () => (await latestVersion()) === next.version, 10_000);
  console.log(JSON.stringify({ frozenPublishOutcomeUnknownAfterMillis: Math.round(millis), committedAfterThawMillis: Math.round(committedAfterThawMillis), message: unknown.message }));
}, 60_000);

test('a publish the catalog itself cancels (waiting past statementTimeoutMillis on a lock): the server-side deadline set with the publish, the error as PostgreSQL gave it, nothing written', async () => {
  const catalog = new TopologyCatalog({ url: catalogUrl, statementTimeoutMillis: 1000 });
  closers.push(() => catalog.close());
  const before = (await catalog.latest())!;
  let error: unknown;
  let millis = 0;
  await withPg(catalogUrl, async (holder) => {
    await holder.query('begin');
    await holder.query('lock table kysely_scale.topology in exclusive mode');
    const started = performance.now();
    error = await catalog.publish(before.withSlotsMoved([2], 'shard0')).then(() => undefined, (e: unknown) => e);
    millis = performance.now() - started;
    await holder.query('rollback');
  });
  console.log(JSON.stringify({ publishCancelledByCatalogAfterMillis: Math.round(millis) }));
  expect(error).toMatchObject({ code: '57014' });
  expect(millis).toBeGreaterThanOrEqual(990);
  expect(millis).toBeLessThan(1450); // before the client-side deadline (1500 ms)
  expect((await catalog.latest())!.version).toBe(before.version);
  // The session rolled back and serves again.
  await catalog.publish(before.withSlotsMoved([2], 'shard0'));
  expect((await catalog.latest())!.version).toBe(before.version + 1);
}, 30_000);
