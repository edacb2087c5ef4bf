/** The ShardedDialect's options: validated at construction, each error a ConfigError naming the option. */
import { createTopology } from '../../../src/cluster/topology';
import { ManualClock, systemClock } from '../../../src/kernel/clock';
import { ConfigError } from '../../../src/kernel/errors';
import { resolveShardedConfig, type ShardedDialectConfig } from '../../../src/sharding/dialect/sharded-dialect-config';

const topology = createTopology({ shards: [0, 1].map((i) => ({ id: `s${i}`, primary: `postgres://u:secret@h${i}/db` })) });
const valid: ShardedDialectConfig = { topology, shardKeys: { orders: 'user_id', users: { column: 'id', type: 'integer' } } };

function configError(config: unknown): ConfigError {
  try {
    resolveShardedConfig(config as ShardedDialectConfig);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('sharded dialect config', () => {
  it('fills the defaults and freezes the result', () => {
    const resolved = resolveShardedConfig(valid);
    expect(Object.isFrozen(resolved)).toBe(true);
    expect(resolved.clock).toBe(systemClock);
    expect(resolved.rules.unshardedShardId).toBe('s0');
    expect(resolved.rules.keylessPolicyOf('orders')).toEqual({ read: 'error', write: 'error' });
    expect(resolved.rules.allowsUnsharded('countries')).toBe(false); // strictTables is on by default
    expect(resolved.rules.allowsUnsharded('pg_catalog.pg_class')).toBe(true);
    expect(resolved.pool).toMatchObject({ max: 10, idleTimeoutMillis: 30_000 });
    expect(resolved.rules.shardKeyOf('users', undefined)?.canonical('05')).toBe(5n);
    const clock = new ManualClock();
    expect(resolveShardedConfig({ ...valid, clock }).clock).toBe(clock);
  });

  it.each<[string, Partial<ShardedDialectConfig> | null, RegExp]>([
    ['config', null, /Invalid option `config`: must be an object, got null/],
    ['topology', { topology: {} as never }, /Invalid option `topology`: must be a topology built with createTopology/],
    ['shardKeys', { shardKeys: 'orders' as never }, /Invalid option `shardKeys`: must be an object/],
    ['shardKeys.orders', { shardKeys: { orders: '' } }, /Invalid option `shardKeys.orders`: must be the key column name or \{ column, type \}, got ""/],
    ['shardKeys.orders.type', { shardKeys: { orders: { column: 'user_id', type: 'int' as never } } }, /`shardKeys.orders.type`: must be one of 'auto', 'text', 'integer', 'uuid', got "int"/],
    ['defaultSchema', { defaultSchema: '' }, /`defaultSchema`: must be a non-empty string/],
    ['defaultKeylessPolicy', { defaultKeylessPolicy: 'all' as never }, /`defaultKeylessPolicy`: must be 'error', 'scatter' or \{ read, write \} with each 'error' or 'scatter', got "all"/],
    ['keylessPolicy.countries', { keylessPolicy: { countries: 'scatter' } }, /"countries" is not a sharded table/],
    ['keylessPolicy.orders', { keylessPolicy: { orders: 'everywhere' as never } }, /`keylessPolicy.orders`: must be 'error', 'scatter' or \{ read, write \}/],
    ['keylessPolicy.orders.write', { keylessPolicy: { orders: { read: 'scatter', write: 'yes' as never } } }, /`keylessPolicy.orders.write`: must be 'error' or 'scatter', got "yes"/],
    ['keylessPolicy.orders.writes', { keylessPolicy: { orders: { writes: 'scatter' } as never } }, /`keylessPolicy.orders.writes`: is not an option \(did you mean `write`\?\); known options: read, write/],
    ['unshardedTables', { unshardedTables: 'countries' as never }, /`unshardedTables`: must be a list of table names, got "countries"/],
    ['unshardedTables[1]', { unshardedTables: ['countries', 'orders'] }, /`unshardedTables\[1\]`: "orders" is also in shardKeys/],
    ['unshardedTables[0]', { unshardedTables: [''] }, /`unshardedTables\[0\]`: must be a non-empty string/],
    ['strictTables', { strictTables: 'no' as never }, /`strictTables`: must be true or false, got "no"/],
    ['unshardedShardId', { unshardedShardId: 's9' }, /`unshardedShardId`: must name a shard of the topology, got "s9"/],
    ['pool.max', { pool: { max: 0 } }, /`pool.max`: must be an integer >= 1, got 0/],
    ['pool.idleTimeoutMillis', { pool: { idleTimeoutMillis: 1.5 } }, /`pool.idleTimeoutMillis`: must be an integer >= 0, got 1.5/],
    // pg's own pool options (min, …) are not passed on: refused rather than silently ignored.
    ['pool.min', { pool: { min: 2 } as ShardedDialectConfig['pool'] }, /`pool.min`: is not an option.*known options: max, idleTimeoutMillis/],
    ['pool.maxIdle', { pool: { maxIdle: 2 } as ShardedDialectConfig['pool'] }, /`pool.maxIdle`: is not an option/],
    ['createPool', { createPool: 'pg' as never }, /`createPool`: must be a function/],
    ['clock', { clock: 5 as never }, /`clock`: must be an object, got 5/],
    ['onRoute', { onRoute: 'console.log' as never }, /`onRoute`: must be a function/],
    ['clock.monotonicNow', { clock: { now: () => 0 } as never }, /`clock.monotonicNow`: must be a function/],
    ['keylesPolicy', { keylesPolicy: {} } as never, /`keylesPolicy`: is not an option \(did you mean `keylessPolicy`\?\)/],
  ])('refuses a bad %s, naming it', (option, change, message) => {
    const error = configError(change === null ? null : { ...valid, ...change });
    expect(error.code).toBe('E_INVALID_CONFIG');
    expect(error.context.option).toBe(option);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('secret');
  });
});
