import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { catalogStatus, initCatalog } from '../../../src/admin/admin-commands';
import { ServerCheckError } from '../../../src/admin/admin-errors';
import { ErrorCodes } from '../../../src/kernel/errors';
import { admin, SECRET, withPassword } from './admin-cli-process';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { replicaIdentitySql } from '../../../src/replication/replica-identity';

// Two shards, each a primary with a real streaming replica: init publishes only a topology whose
// servers are what it says they are.
let cluster: TestCluster;
let shards: readonly TestShardUrls[];
let catalogDb: string;

beforeAll(async () => {
  cluster = await startTestCluster({ shards: 2, replicasPerShard: 1 });
  shards = await cluster.createDatabase('init_shards');
  catalogDb = (await cluster.createDatabase('init_catalog'))[0]!.primaryUrl;
}, 60_000);

afterAll(() => cluster?.stop());

// Refused topologies never reach the catalog, so the refusals may all name this one.
const UNUSED_CATALOG = 'postgres://postgres@127.0.0.1:1/never_reached';

async function refusal(promise: Promise<unknown>): Promise<ServerCheckError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ServerCheckError);
  return error as ServerCheckError;
}

const [s0, s1] = [0, 1];

describe('init checks the servers before it publishes', () => {
  test('publishes when every primary is a primary and every replica streams from its own primary', async () => {
    const [{ primaryUrl: catalog }] = (await cluster.createDatabase('init_catalog_ok')) as [TestShardUrls];
    const result = await initCatalog(catalog, shards.map((s) => ({ id: s.id, primary: s.primaryUrl, replicas: [...s.replicaUrls] })));
    expect(result).toMatchObject({ version: 1, shards: 2 });
  });

  test("writes each shard's replica identity on its primary as the operator role and the standby replays it; a primary whose role may not create it is reported (init still publishes), password hidden", async () => {
    // Databases made with plain SQL (the test cluster's createDatabase writes the identity itself).
    for (const shard of cluster.shards) await withPg(shard.primary.url, (c) => c.query('create database init_bare'));
    const url = (base: string): string => Object.assign(new URL(base), { pathname: '/init_bare' }).toString();
    const bare = cluster.shards.map((s) => ({ id: s.id, primary: url(s.primary.url), replicas: s.replicas.map((r) => url(r.url)) }));
    const [{ primaryUrl: catalog }] = (await cluster.createDatabase('init_catalog_identity')) as [TestShardUrls];
    const result = await initCatalog(catalog, bare);
    expect(result.identityProblems).toEqual([]);
    for (const shard of bare) {
      await waitForReplay(shard.primary, shard.replicas[0]!);
      const replayed = await withPg(shard.replicas[0]!, (c) => c.query<{ shard_id: string }>('select shard_id from kysely_scale.replica_identity'));
      expect(replayed.rows).toEqual([{ shard_id: shard.id }]);
    }

    await withPg(cluster.shards[0]!.primary.url, (c) => c.query("do $$ begin if not exists (select 1 from pg_roles where rolname = 'no_create') then create role no_create login; end if; end $$"));
    const asNoCreate = (text: string): string => Object.assign(new URL(text), { username: 'no_create', password: SECRET }).toString();
    for (const shard of cluster.shards) await withPg(shard.primary.url, (c) => c.query('create database init_refused'));
    const refusedShards = cluster.shards.map((s) => ({ id: s.id, primary: asNoCreate(Object.assign(new URL(s.primary.url), { pathname: '/init_refused' }).toString()), replicas: [s.replicas[0]!.url] }));
    const [{ primaryUrl: catalog2 }] = (await cluster.createDatabase('init_catalog_refused')) as [TestShardUrls];
    const refused = await initCatalog(catalog2, refusedShards, { checkServers: false });
    expect(refused.version).toBe(1); // published: the identity is not part of the topology
    expect(refused.identityProblems.map((p) => p.shard)).toEqual(cluster.shards.map((s) => s.id));
    expect(refused.identityProblems[0]!.problem).toMatch(/permission denied/);
    expect(JSON.stringify(refused)).not.toContain(SECRET);

    // A primary whose identity row names another shard (a restored copy of it): kept, and reported.
    for (const shard of cluster.shards) await withPg(shard.primary.url, (c) => c.query('create database init_clone'));
    const clone = cluster.shards.map((s) => ({ id: s.id, primary: Object.assign(new URL(s.primary.url), { pathname: '/init_clone' }).toString(), replicas: [] as string[] }));
    await withPg(clone[1]!.primary, (c) => c.query(replicaIdentitySql(clone[0]!.id)));
    const withReplica = clone.map((s, i) => ({ ...s, replicas: [Object.assign(new URL(cluster.shards[i]!.replicas[0]!.url), { pathname: '/init_clone' }).toString()] }));
    const [{ primaryUrl: catalog3 }] = (await cluster.createDatabase('init_catalog_clone')) as [TestShardUrls];
    const cloned = await initCatalog(catalog3, withReplica, { checkServers: false });
    expect(cloned.identityProblems).toEqual([{ shard: clone[1]!.id, problem: expect.stringContaining(`names shard "${clone[0]!.id}"`) }]);
  });

  test('refuses a standby listed as a primary, a primary listed as a replica and a server that does not answer, naming each, password hidden; nothing published', async () => {
    const unreachable = `postgres://app:${SECRET}@127.0.0.1:1/app`;
    const error = await refusal(
      initCatalog(UNUSED_CATALOG, [
        { id: 'swapped', primary: shards[s0]!.replicaUrls[0]!, replicas: [shards[s0]!.primaryUrl] },
        { id: 'gone', primary: unreachable, replicas: [] },
      ]),
    );
    expect(error.code).toBe(ErrorCodes.INVALID_TOPOLOGY);
    expect(error.problems.map((p) => [p.shard, p.role, p.check])).toEqual([
      ['swapped', 'primary', 'not-primary'],
      ['swapped', 'replica', 'not-replica'],
      ['gone', 'primary', 'unreachable'],
    ]);
    expect(error.problems[2]!.server).toBe('postgres://app:***@127.0.0.1:1/app');
    expect(error.message).toContain(`swapped primary ${shards[s0]!.replicaUrls[0]} is in recovery`);
    expect(error.message).toContain('gone primary postgres://app:***@127.0.0.1:1/app does not answer: connect ECONNREFUSED');
    expect(error.message).not.toContain(SECRET);
    expect(JSON.stringify(error.context)).not.toContain(SECRET);
  });

  test("refuses a replica that streams from another shard's primary", async () => {
    const error = await refusal(
      initCatalog(UNUSED_CATALOG, [{ id: 'mixed', primary: shards[s1]!.primaryUrl, replicas: [shards[s0]!.replicaUrls[0]!] }]),
    );
    expect(error.problems).toEqual([
      expect.objectContaining({ shard: 'mixed', role: 'replica', check: 'other-primary', server: shards[s0]!.replicaUrls[0] }),
    ]);
    expect(error.problems[0]!.problem).toMatch(/streams from 127\.0\.0\.1:\d+, not from this shard's primary/);
  });

  test('refuses one database listed as two shards under two addresses (localhost and 127.0.0.1), naming both', async () => {
    const first = shards[s0]!.primaryUrl;
    const second = withPassword(first).replace('127.0.0.1', 'localhost');
    const error = await refusal(
      initCatalog(UNUSED_CATALOG, [
        { id: 'one', primary: first, replicas: [] },
        { id: 'two', primary: second, replicas: [] },
        { id: 'three', primary: shards[s1]!.primaryUrl, replicas: [] },
      ]),
    );
    expect(error.code).toBe(ErrorCodes.INVALID_TOPOLOGY);
    expect(error.problems.map((p) => [p.shard, p.role, p.check])).toEqual([['two', 'primary', 'same-database']]);
    expect(error.problems[0]!.server).toContain('@localhost:');
    expect(error.message).toContain(`is the same database ("init_shards" on the same running server) as one primary ${first}`);
    expect(error.message).not.toContain(SECRET);
  });

  test("refuses a replica whose URL names a database other than its primary's", async () => {
    await cluster.createDatabase('init_other');
    const otherDb = shards[s0]!.replicaUrls[0]!.replace(/\/init_shards$/, '/init_other');
    expect(otherDb).toMatch(/\/init_other$/);
    const error = await refusal(initCatalog(UNUSED_CATALOG, [{ id: 'a', primary: shards[s0]!.primaryUrl, replicas: [otherDb] }]));
    expect(error.problems).toEqual([expect.objectContaining({ shard: 'a', role: 'replica', check: 'other-database', server: otherDb })]);
    expect(error.problems[0]!.problem).toContain(`names database "init_other", but its primary's is "init_shards"`);
  });

  test('the CLI exits 1 with the coded error and publishes nothing; --skip-checks publishes anyway', async () => {
    const catalog = withPassword(catalogDb);
    const shardArg = `swapped=${withPassword(shards[s0]!.replicaUrls[0]!)},${withPassword(shards[s0]!.primaryUrl)}`;
    const refused = await admin('init', '--catalog', catalog, '--shard', shardArg);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^E_INVALID_TOPOLOGY: The topology does not match its servers \(2 problems\); nothing was published/);
    expect(refused.stderr).toContain('swapped primary postgres://postgres:***@127.0.0.1:');
    expect(refused.stdout + refused.stderr).not.toContain(SECRET);
    expect((await catalogStatus(catalogDb)).version).toBeNull();

    const forced = await admin('init', '--catalog', catalog, '--shard', shardArg, '--skip-checks');
    expect(forced.code).toBe(0);
    expect((await catalogStatus(catalogDb)).version).toBe(1);
  }, 60_000);
});
