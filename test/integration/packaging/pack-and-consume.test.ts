/**
 * The package as users get it: `npm pack` of a clean copy of the working tree (so `prepare` must
 * build dist/ from nothing), the tarball installed into a temporary app, and a small consumer
 * (consumer/) compiled and run four ways: ESM TypeScript (nodenext, skipLibCheck false), CommonJS
 * TypeScript (node10 resolution), plain ESM and plain CommonJS, each through the core, cache,
 * balancer, admin and testing entry points. The app installs Kysely and @types/node at the
 * repository's versions from npm's cache (the registry only if the cache lacks them), and not
 * testcontainers, an optional peer: the ESM consumer starts a test cluster while a stand-in Docker
 * engine answers the probe, so the fallback to local processes is exercised for real.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startTestCluster, type TestCluster } from '../../../src/testing';

const repoRoot = resolve(__dirname, '../../..');
const tscBin = join(repoRoot, 'node_modules/typescript/bin/tsc');
// What `npm pack` reads; everything else of a clone is irrelevant to the tarball.
const PACK_INPUTS = /^(package\.json|package-lock\.json|tsconfig[^/]*\.json|scripts\/.*|src\/.*|README\.md|LICENSE.*)$/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let work: string;
let app: string;
let tarballFiles: string[];
let compiled: { esm: Run; cjs: Run };
// The plain JS consumers run while TypeScript compiles the others (the machine has 2 cores).
let plainRuns: { esm: Promise<Report>; cjs: Promise<Report> };
let fakeDocker: Server;
let dockerHost: string;
let cluster: TestCluster | undefined;

/** npm's own lifecycle variables from an outer `npm test` would leak into the inner npm runs. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('npm_') || /^npm_config_(cache|registry|userconfig|proxy|https_proxy|noproxy|cafile|strict_ssl)$/i.test(key)) env[key] = value;
  }
  return { ...env, ...extra };
}

function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv(), timeoutMillis = 180_000): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMillis });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

function expectSuccess(result: Run, what: string): void {
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
}

/** A clean copy of the working tree's pack inputs, as a fresh clone would have them (no dist/). */
async function stageClone(target: string): Promise<void> {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\0')
    .filter((path) => PACK_INPUTS.test(path));
  for (const path of listed) {
    const exists = await stat(join(repoRoot, path)).then((s) => s.isFile(), () => false);
    if (exists) await cp(join(repoRoot, path), join(target, path));
  }
  // Dev dependencies (TypeScript) for `prepare`, as `npm install` in a clone would provide.
  await symlink(join(repoRoot, 'node_modules'), join(target, 'node_modules'), 'dir');
}

/** Installs from npm's cache; a cache without some package's metadata falls back to the registry. */
async function installInto(dir: string, specs: readonly string[]): Promise<void> {
  const common = ['install', '--no-audit', '--no-fund', '--no-update-notifier', ...specs];
  const offline = await run('npm', ['--offline', ...common], dir);
  if (offline.code === 0) return;
  expectSuccess(await run('npm', ['--prefer-offline', ...common], dir), `npm install ${specs.join(' ')}`);
}

function versionOf(name: string): string {
  return (require(join(repoRoot, 'node_modules', name, 'package.json')) as { version: string }).version;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kysely-scale-pack-'));
  fakeDocker = createServer((req, res) => {
    res.writeHead(req.url === '/_ping' ? 200 : 404).end('OK');
  });
  await new Promise<void>((done) => fakeDocker.listen(0, '127.0.0.1', done));
  dockerHost = `tcp://127.0.0.1:${(fakeDocker.address() as AddressInfo).port}`;

  const clone = join(work, 'clone');
  await stageClone(clone);
  expectSuccess(await run('npm', ['pack', '--pack-destination', work], clone), 'npm pack');
  const tarball = (await readdir(work)).find((f) => f.endsWith('.tgz'));
  if (tarball === undefined) throw new Error('npm pack wrote no tarball');
  tarballFiles = execFileSync('tar', ['-tzf', join(work, tarball)], { encoding: 'utf8' }).split('\n').filter((f) => f !== '');

  app = join(work, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), `${JSON.stringify({ name: 'kysely-scale-consumer', private: true })}\n`);
  await installInto(app, [join(work, tarball), `kysely@${versionOf('kysely')}`, `@types/node@${versionOf('@types/node')}`]);
  await cp(join(__dirname, 'consumer'), app, { recursive: true });
  plainRuns = { esm: consume('esm-js/main.mjs', { DOCKER_HOST: dockerHost }), cjs: consume('cjs-js/main.cjs') };
  for (const p of Object.values(plainRuns)) p.catch(() => undefined); // awaited by their tests
  const [esm, cjs] = await Promise.all([
    run(process.execPath, [tscBin, '-p', join(app, 'esm-ts'), '--pretty', 'false'], app),
    run(process.execPath, [tscBin, '-p', join(app, 'cjs-ts'), '--pretty', 'false'], app),
  ]);
  compiled = { esm: esm!, cjs: cjs! };
}, 300_000);

afterAll(async () => {
  await cluster?.stop();
  await new Promise((done) => fakeDocker?.close(done));
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

type Report = Record<string, unknown>;

/** Runs a consumer and returns the JSON report it prints. */
async function consume(file: string, env: Record<string, string> = {}): Promise<Report> {
  const result = await run(process.execPath, [join(app, file)], app, cleanEnv(env), 120_000);
  expectSuccess(result, `node ${file}`);
  return { ...(JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, unknown>), stderr: result.stderr };
}

const EVERY_ENTRY_POINT = {
  sql: 'select "id", "name" from "users" where "id" = $1',
  sameKysely: true,
  noShardKey: 'E_NO_SHARD_KEY',
  tierSize: 0,
  instances: 1,
  documentShards: 2,
  testClusterShards: 2,
  startTestCluster: 'function',
  version: (require('../../../package.json') as { version: string }).version,
};

describe('the packed package', () => {
  test('npm pack of a fresh clone builds dist: CommonJS and ESM with declarations, executable bins, no sources', () => {
    for (const file of [
      'package/package.json',
      'package/dist/index.js',
      'package/dist/index.d.ts',
      'package/dist/esm/package.json',
      'package/dist/esm/index.js',
      'package/dist/esm/index.d.ts',
      ...['testing', 'cache', 'balancer', 'admin', 'metrics'].flatMap((sub) => [`package/dist/${sub}/index.d.ts`, `package/dist/esm/${sub}/index.js`]),
      'package/dist/admin/cli/admin-cli.js',
      'package/dist/balancer/http/proxy-cli.js',
    ]) {
      expect(tarballFiles).toContain(file);
    }
    expect(tarballFiles.filter((f) => /^package\/(src|test|scripts)\//.test(f) || f.endsWith('.map'))).toEqual([]);
  });

  test('an ESM TypeScript app (nodenext, skipLibCheck false) compiles new Kysely<DB>({ dialect: new ShardedDialect(…) }) and loads one Kysely', async () => {
    expect(compiled.esm.stdout + compiled.esm.stderr).toBe('');
    expect(compiled.esm.code).toBe(0);
    const report = await consume('esm-ts/out/main.js');
    expect(report).toMatchObject({ ...EVERY_ENTRY_POINT, kyselyCommonJsFiles: 0, stopCluster: 'function' });
  });

  test('a CommonJS TypeScript app with node10 resolution finds every subpath', async () => {
    expect(compiled.cjs.stdout + compiled.cjs.stderr).toBe('');
    expect(compiled.cjs.code).toBe(0);
    expect(await consume('cjs-ts/out/main.js')).toMatchObject({ ...EVERY_ENTRY_POINT, kyselyEsmFiles: 0 });
  });

  test('a plain CommonJS app loads every entry point and only Kysely\'s CommonJS build', async () => {
    expect(await plainRuns.cjs).toMatchObject({ ...EVERY_ENTRY_POINT, kyselyEsmFiles: 0 });
  });

  test('a plain ESM app streams rows from a test cluster; with Docker answering but no testcontainers it runs local processes and says so once', async () => {
    const report = await plainRuns.esm;
    expect(report).toMatchObject({ ...EVERY_ENTRY_POINT, kyselyCommonJsFiles: 0, backend: 'local', secondBackend: 'local', streamed: [{ id: 1, name: 'one' }] });
    const warnings = report.warnings as { name: string; code: string; message: string }[];
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ name: 'KyselyScaleWarning', code: 'KYSELY_SCALE_NO_TESTCONTAINERS' });
    expect(warnings[0]!.message).toContain(`a Docker engine answered at ${dockerHost}`);
    expect(warnings[0]!.message).toContain('npm install --save-dev testcontainers@^11');
    expect(report.dockerRefusal).toMatchObject({ code: 'E_TEST_CLUSTER' });
    expect((report.dockerRefusal as { message: string }).message).toMatch(/backend 'docker'.*testcontainers is not installed/);
    expect((report.dockerRefusal as { message: string }).message).not.toMatch(/\bbut\b.*\bbut\b/); // one clause per fact, not "…, but…, but…"
  });

  test('the bins run from node_modules/.bin; kysely-scale-admin migrate runs compiled migrations on a shard', async () => {
    const admin = await run(join(app, 'node_modules/.bin/kysely-scale-admin'), ['--version'], app);
    expect(admin).toMatchObject({ code: 0, stdout: `${EVERY_ENTRY_POINT.version}\n` });
    const proxy = await run(join(app, 'node_modules/.bin/kysely-scale-proxy'), ['--help'], app);
    expect(proxy.code).toBe(0);
    expect(proxy.stdout).toContain('Usage: kysely-scale-proxy');
    expect(proxy.stdout).not.toMatch(/src\/|\.ts\b/);

    cluster = await startTestCluster({ shards: 1 });
    const [shard] = await cluster.createDatabase('packaged_migrate');
    const migrations = join(app, 'migrations');
    await mkdir(migrations);
    await writeFile(join(migrations, '0001_items.js'), "exports.up = (db) => db.schema.createTable('items').addColumn('id', 'integer').execute();\n");
    const migrate = await run(join(app, 'node_modules/.bin/kysely-scale-admin'), ['migrate', '--shard', `s0=${shard!.primaryUrl}`, '--folder', migrations, '--json'], app);
    expect(migrate.code).toBe(0);
    expect(JSON.parse(migrate.stdout)).toMatchObject({ ok: true, shards: [{ shardId: 's0', status: 'migrated', current: '0001_items' }] });
  });
});
