/**
 * Importing the core entry point must not load a Redis client, an HTTP client, the proxy or the
 * test cluster: a service that only shards pays for nothing else. Checked in a fresh process
 * through `require.cache`, since Jest's module registry is not Node's.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const repoRoot = join(__dirname, '../../..');

function modulesLoadedBy(entry: string): string[] {
  const script = `require(${JSON.stringify(join(repoRoot, entry))}); process.stdout.write(JSON.stringify(Object.keys(require.cache)));`;
  const out = execFileSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: repoRoot, encoding: 'utf8', timeout: 30_000 });
  return (JSON.parse(out) as string[]).map((p) => p.slice(repoRoot.length + 1));
}

describe('the core entry point', () => {
  const loaded = modulesLoadedBy('src/index.ts');

  it('loads the dialect and Kysely', () => {
    expect(loaded).toContain('src/sharding/dialect/sharded-dialect.ts');
    expect(loaded.some((p) => p.includes('node_modules/kysely/'))).toBe(true);
  });

  it.each([
    ['ioredis', /node_modules\/ioredis\//],
    ['undici', /node_modules\/undici\//],
    ['lru-cache', /node_modules\/lru-cache\//],
    ['testcontainers', /node_modules\/testcontainers\//],
    ['prom-client (Prometheus is kysely-scale/metrics)', /node_modules\/prom-client\//],
    ['the HTTP client and proxy', /^src\/balancer\/http\//],
    ['the cache', /^src\/cache\//],
    ['the test cluster', /^src\/testing\//],
    ['the admin commands', /^src\/admin\//],
  ])('does not load %s', (_name, pattern) => {
    expect(loaded.filter((p) => pattern.test(p))).toEqual([]);
  });
});

describe('the balancer entry point', () => {
  it('loads undici only through its HTTP sub-folder, and never ioredis', () => {
    const loaded = modulesLoadedBy('src/balancer/index.ts');
    expect(loaded.filter((p) => p.includes('node_modules/ioredis/'))).toEqual([]);
    expect(loaded).toContain('src/balancer/http/http-client.ts');
  });
});
