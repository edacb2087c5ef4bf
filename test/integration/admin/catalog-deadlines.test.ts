/**
 * Every wait on the topology catalog has a deadline. A catalog host that silently drops packets
 * (here: a listener that accepts and never answers, and the catalog's real PostgreSQL frozen with
 * SIGSTOP, which acknowledges TCP but never answers) held every admin command and every
 * instance's watch for the OS's TCP timeout: forever, since the packets are acknowledged. Now
 * connecting, each statement and a watch's heartbeat fail with a `CatalogTimeoutError` (code
 * `E_CATALOG_UNAVAILABLE`) naming the catalog with its password hidden and the option to raise,
 * and a watch keeps trying, with backoff, and reports each failure until the catalog answers
 * again. The CLI's `--catalog-connect-timeout-ms` and `--catalog-timeout-ms` set the deadlines of
 * every catalog connection a command makes.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { startTestCluster, type TestCluster, type TestShardUrls } from '../../../src/testing';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { followCatalog } from '../../../src/admin/follow-catalog';
import { CatalogTimeoutError, CATALOG_DEADLINE_ENVIRONMENT } from '../../../src/admin/catalog-connections';
import { ErrorCodes } from '../../../src/kernel/errors';
import { freeze, until } from '../replication/replication-fault-fixture';
import { SECRET, admin, withPassword } from './admin-cli-process';
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
  [shard] = (await cluster.createDatabase('catalog_deadlines')) as [TestShardUrls];
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

/** `promise`'s outcome (its error when it fails), or a failure once `millis` passed: the old code waited forever. */
function settledWithin<T>(millis: number, what: string, promise: Promise<T>): Promise<T | Error> {
  return within(millis, what, promise.catch((error: unknown) => error as Error));
}

function redactedCatalog(url: string): string {
  const parsed = new URL(url);
  parsed.password = '***';
  return parsed.toString();
}

function expectCatalogTimeout(error: unknown, url: string, waitedFor: RegExp): void {
  expect(error).toBeInstanceOf(CatalogTimeoutError);
  expect(error).toMatchObject({ code: ErrorCodes.CATALOG_UNAVAILABLE, catalog: redactedCatalog(url) });
  expect((error as Error).message).toContain(`The catalog ${redactedCatalog(url)} did not answer`);
  expect((error as Error).message).toMatch(waitedFor);
  // What to check, and what to raise.
  expect((error as Error).message).toMatch(/: check that its server is up and reachable from here; if it is only slow, raise (connectionTimeoutMillis \(the admin CLI's --catalog-connect-timeout-ms\)|statementTimeoutMillis \(the admin CLI's --catalog-timeout-ms\))\.$/);
  expect((error as CatalogTimeoutError).cause).toBeDefined();
  expect((error as Error).message).not.toContain(SECRET);
}

test('a host that accepts connections and never answers: each call fails at connectionTimeoutMillis, naming the catalog (password hidden)', async () => {
  const sockets = new Set<Socket>();
  const blackhole: Server = createServer((socket) => sockets.add(socket)); // reads nothing, writes nothing
  await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
  const port = (blackhole.address() as { port: number }).port;
  const url = `postgres://app:${SECRET}@127.0.0.1:${port}/catalog`;
  const catalog = new TopologyCatalog({ url, connectionTimeoutMillis: 500 });
  try {
    for (const call of [(): Promise<unknown> => catalog.latest(), (): Promise<unknown> => catalog.watch(() => undefined)]) {
      const started = performance.now();
      const error = await settledWithin(5000, 'a call on a silent catalog', call());
      const millis = performance.now() - started;
      expectCatalogTimeout(error, url, /while connecting within 500 ms \(connectionTimeoutMillis\)/);
      expect(millis).toBeGreaterThanOrEqual(490);
      expect(millis).toBeLessThan(2000);
    }
    expect(await settledWithin(3000, 'closing the catalog', catalog.close())).toBeUndefined();
  } finally {
    for (const socket of sockets) socket.destroy();
    blackhole.close();
  }
}, 30_000);

test('a catalog frozen (SIGSTOP) under an open connection: a statement fails at statementTimeoutMillis + 500 ms, and the catalog serves again once it answers', async () => {
  const catalog = new TopologyCatalog({ url: catalogUrl, statementTimeoutMillis: 1000, connectionTimeoutMillis: 1000 });
  closers.push(() => catalog.close());
  expect((await catalog.latest())?.version).toBe(1); // its pool holds a connection now
  const thaw = freeze(cluster.shards[0]!.primary);
  let millis: number;
  let error: unknown;
  try {
    const started = performance.now();
    error = await settledWithin(8000, 'a statement on a frozen catalog', catalog.latest());
    millis = performance.now() - started;
  } finally {
    thaw();
  }
  console.log(JSON.stringify({ frozenCatalogStatementFailedAfterMillis: Math.round(millis) }));
  expectCatalogTimeout(error, catalogUrl, /a statement within 1500 ms \(statementTimeoutMillis \+ 500 ms\)/);
  expect(millis).toBeGreaterThanOrEqual(1490);
  expect(millis).toBeLessThan(3000);
  expect((await catalog.latest())?.version).toBe(1); // the dropped connection was not reused
}, 30_000);

test('followCatalog on a catalog that freezes: the heartbeat reports it, reconnect attempts go on with backoff (each reported), and after SIGCONT the version published since arrives', async () => {
  const catalog = new TopologyCatalog({ url: catalogUrl, heartbeatIntervalMillis: 200, statementTimeoutMillis: 500, connectionTimeoutMillis: 500, reconnectDelayMillis: 100, maxReconnectDelayMillis: 400 });
  closers.push(() => catalog.close());
  const follower = { topology: v1, setTopology: (t: Topology) => (follower.topology = t) };
  const errors: { error: Error; at: number }[] = [];
  const watch = await followCatalog(follower, catalog, (error) => errors.push({ error, at: performance.now() }));
  closers.push(() => watch.close());
  const thaw = freeze(cluster.shards[0]!.primary);
  const frozenAt = performance.now();
  try {
    // The heartbeat's deadline: its interval, then the statement's 500 + 500 ms.
    await until('the frozen catalog reported', () => errors.length >= 1, 5000);
    // Each reconnect attempt fails at the connect deadline and is reported.
    await until('three reconnect attempts reported', () => errors.length >= 4, 10_000);
  } finally {
    thaw();
  }
  const firstMillis = errors[0]!.at - frozenAt;
  console.log(JSON.stringify({ watchReportedFrozenCatalogAfterMillis: Math.round(firstMillis), reports: errors.map((e) => `${Math.round(e.at - frozenAt)} ms: ${e.error.message}`) }));
  expectCatalogTimeout(errors[0]!.error, catalogUrl, /a statement within 1000 ms/);
  expect(firstMillis).toBeLessThan(3000);
  for (const { error } of errors.slice(1, 4)) expectCatalogTimeout(error, catalogUrl, /while connecting within 500 ms/);
  // Once it answers again: a version published now reaches the follower through the new connection.
  const publisher = new TopologyCatalog({ url: catalogUrl });
  closers.push(() => publisher.close());
  await publisher.publish(v1.withSlotsMoved([0], 'shard0'));
  const v2 = v1.version + 1;
  await until('version 2 followed', () => follower.topology.version === v2, 10_000);
}, 60_000);

test('CLI verify and status on a frozen catalog exit 1 within the default deadlines with a coded error naming the catalog (password hidden)', async () => {
  const thaw = freeze(cluster.shards[0]!.primary);
  let runs;
  const started = performance.now();
  try {
    runs = await Promise.all([admin('verify', '--catalog', catalogUrl), admin('status', '--catalog', catalogUrl)]);
  } finally {
    thaw();
  }
  const millis = performance.now() - started;
  const [verify, status] = runs;
  console.log(JSON.stringify({ cliOnFrozenCatalogMillis: Math.round(millis), verify: verify.stdout + verify.stderr, status: status.stderr }));
  // The default connectionTimeoutMillis (5 s), plus tsx's start.
  expect(millis).toBeLessThan(15_000);
  expect(verify.code).toBe(1);
  expect(verify.stdout).toContain(
    `E_MOVE_REFUSED: The catalog ${redactedCatalog(catalogUrl)} did not answer while connecting within 5000 ms (connectionTimeoutMillis): check --catalog and that its server is up; if it is only slow, raise connectionTimeoutMillis (--catalog-connect-timeout-ms).`,
  );
  expect(status.code).toBe(1);
  expect(status.stderr).toContain(`E_CATALOG_UNAVAILABLE: The catalog ${redactedCatalog(catalogUrl)} did not answer while connecting within 5000 ms`);
  for (const run of runs) expect(run.stdout + run.stderr).not.toContain(SECRET);
}, 60_000);

test('CLI --catalog-connect-timeout-ms and --catalog-timeout-ms set the deadlines of every catalog connection of the command (the move store\'s too)', async () => {
  const thaw = freeze(cluster.shards[0]!.primary);
  let runs;
  const started = performance.now();
  try {
    runs = await Promise.all([
      admin('verify', '--catalog', catalogUrl, '--catalog-connect-timeout-ms', '1000'),
      admin('status', '--no-live', '--catalog', catalogUrl, '--catalog-connect-timeout-ms', '1000'),
      admin('moves', '--catalog', catalogUrl, '--catalog-connect-timeout-ms', '1000'),
    ]);
  } finally {
    thaw();
  }
  const millis = performance.now() - started;
  console.log(JSON.stringify({ cliWithCatalogConnectTimeout1000Millis: Math.round(millis), runs: runs.map((r) => r.stdout + r.stderr) }));
  const [verify, status, moves] = runs;
  // 1 s instead of the 5 s default (plus tsx's start); 1b11861 refused the flags (exit 2).
  expect(millis).toBeLessThan(4500);
  expect(verify.code).toBe(1);
  expect(verify.stdout).toContain('did not answer while connecting within 1000 ms (connectionTimeoutMillis)');
  expect(status.code).toBe(1);
  expect(status.stderr).toContain('E_CATALOG_UNAVAILABLE: ');
  expect(status.stderr).toContain('did not answer while connecting within 1000 ms (connectionTimeoutMillis)');
  expect(moves.code).toBe(1);
  expect(moves.stdout).toContain('did not answer while connecting within 1000 ms (connectionTimeoutMillis)');
  for (const run of runs) expect(run.stdout + run.stderr).not.toContain(SECRET);

  // The statement deadline: the move table locked by a migration, so listing moves waits on it.
  expect((await admin('moves', '--catalog', catalogUrl)).code).toBe(0); // the move store installed
  const slow = await withPg(catalogUrl, async (holder) => {
    await holder.query('begin');
    await holder.query('lock table kysely_scale.move in access exclusive mode');
    const run = await admin('moves', '--catalog', catalogUrl, '--catalog-timeout-ms', '300');
    await holder.query('rollback');
    return run;
  });
  console.log(JSON.stringify({ movesBehindLockWithCatalogTimeout300: slow.stdout + slow.stderr }));
  expect(slow.code).toBe(1);
  expect(slow.stdout).toContain('E_CATALOG_UNAVAILABLE: ');
  expect(slow.stdout).toContain('did not answer a statement within 800 ms (statementTimeoutMillis + 500 ms)');
  // A bad value is a usage error naming the flag.
  const bad = await admin('status', '--catalog', catalogUrl, '--catalog-timeout-ms', '0');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('--catalog-timeout-ms takes a whole number ≥ 1; got "0".');
}, 60_000);

test('the deadlines left out of the options come from the environment, validated naming the variable', () => {
  const name = CATALOG_DEADLINE_ENVIRONMENT.statementTimeoutMillis;
  const saved = process.env[name];
  try {
    process.env[name] = 'soon';
    expect(() => new TopologyCatalog({ url: catalogUrl })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_CONFIG, context: { option: 'statementTimeoutMillis', environment: name } }));
    process.env[name] = '2500';
    expect(() => new TopologyCatalog({ url: catalogUrl })).not.toThrow();
    expect(() => new TopologyCatalog({ url: catalogUrl, statementTimeoutMillis: 3000 })).not.toThrow();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
});
