/**
 * Dependency rules of kysely-scale, checked by `npm test` (`npm run depcheck`). The folder tree is
 * the data-flow pipeline; each layer imports only the layers before it:
 *
 *   kernel → cluster → balancer (core, strategies) → replication → sharding (routing, scatter → dialect)
 *   → cache → admin, testing;  balancer/http sits above the balancer core.
 *
 * The core entry point (src/index.ts) must load no Redis client, no HTTP client and no proxy.
 */
const LAYERS = [
  ['kernel', '^src/kernel/'],
  ['cluster', '^src/cluster/'],
  ['balancer', '^src/balancer/(?!http/|index\\.ts$)'],
  ['replication', '^src/replication/'],
  ['sharding-routing', '^src/sharding/routing/'],
  ['sharding-scatter', '^src/sharding/scatter/'],
  ['sharding-errors', '^src/sharding/sharding-errors\\.ts$'],
  ['sharding-dialect', '^src/sharding/dialect/'],
  ['cache', '^src/cache/'],
  ['balancer-http', '^src/balancer/http/'],
  ['admin', '^src/admin/'],
  ['testing', '^src/testing/'],
];

// What each layer may NOT import (everything above it, plus its siblings where they must stay apart).
const ABOVE = {
  kernel: ['cluster', 'balancer', 'replication', 'sharding-routing', 'sharding-scatter', 'sharding-errors', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  cluster: ['balancer', 'replication', 'sharding-routing', 'sharding-scatter', 'sharding-errors', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  balancer: ['replication', 'sharding-routing', 'sharding-scatter', 'sharding-errors', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  replication: ['sharding-routing', 'sharding-scatter', 'sharding-errors', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  'sharding-errors': ['sharding-routing', 'sharding-scatter', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  'sharding-routing': ['sharding-scatter', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  'sharding-scatter': ['sharding-routing', 'sharding-dialect', 'cache', 'balancer-http', 'admin', 'testing'],
  'sharding-dialect': ['cache', 'balancer-http', 'admin', 'testing'],
  cache: ['balancer-http', 'admin', 'testing'],
  'balancer-http': ['replication', 'sharding-routing', 'sharding-scatter', 'sharding-errors', 'sharding-dialect', 'cache', 'admin', 'testing'],
  admin: ['testing', 'balancer-http'],
  testing: ['admin', 'balancer-http'],
};

const pathOf = Object.fromEntries(LAYERS);

const layerRules = Object.entries(ABOVE).map(([layer, forbidden]) => ({
  name: `layer-${layer}`,
  comment: `${layer} may import only the layers before it (see the header of this file)`,
  severity: 'error',
  from: { path: pathOf[layer] },
  to: { path: forbidden.map((l) => pathOf[l]) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'No import cycles, inside a folder or between folders.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'core-entry-stays-light',
      comment: 'Importing kysely-scale (the core) must not load Redis, HTTP clients, the proxy or the test cluster.',
      severity: 'error',
      from: { path: '^src/index\\.ts$' },
      to: { path: ['^src/cache/', '^src/balancer/http/', '^src/balancer/index\\.ts$', '^src/admin/', '^src/testing/'] },
    },
    {
      name: 'drivers-only-where-used',
      comment: 'ioredis only in the cache and the test cluster; undici only in balancer/http; testcontainers only in the test cluster.',
      severity: 'error',
      from: { path: '^src/(?!cache/|testing/)' },
      to: { path: '^node_modules/ioredis/' },
    },
    {
      name: 'undici-only-in-http',
      severity: 'error',
      from: { path: '^src/(?!balancer/http/)' },
      to: { path: '^node_modules/undici/' },
    },
    {
      name: 'prom-client-off-the-data-path',
      comment: 'The dialect and its layers report to @opentelemetry/api and kernel/telemetry only; prom-client is loaded by kysely-scale/metrics, the balancer exposition and the proxy.',
      severity: 'error',
      from: { path: '^src/(cluster|replication|sharding|cache)/' },
      to: { path: ['^node_modules/prom-client/', '^src/kernel/prometheus-registry\\.ts$'] },
    },
    {
      name: 'testcontainers-only-in-testing',
      severity: 'error',
      from: { path: '^src/(?!testing/)' },
      to: { path: '^node_modules/testcontainers/' },
    },
    {
      name: 'src-never-imports-tests',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|examples)/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true, pathNot: '^(murmurhash3js-revisited)$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    exclude: { path: '\\.d\\.ts$' },
  },
};
