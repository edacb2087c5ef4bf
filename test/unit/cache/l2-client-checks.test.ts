import { ConfigError } from '../../../src/kernel/errors';
import type { RedisLike } from '../../../src/cache/l2-tier';
import { clusterRedisTier } from '../../../src/cache/redis-cluster-tier';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';

describe('L2 tier client checks', () => {
  it('L2 tiers refuse an ioredis client without a per-command timeout, naming the option', () => {
    const fake = { get: async () => null, evalsha: async () => null, options: { enableOfflineQueue: false } };
    expect(() => singleRedisTier({ client: fake as unknown as RedisLike })).toThrow(/client\.options\.commandTimeout/);
    const cluster = { ...fake, nodes: () => [], options: { enableOfflineQueue: false, redisOptions: {} } };
    expect(() => clusterRedisTier({ cluster: cluster as unknown as RedisLike })).toThrow(/cluster\.options\.redisOptions\.commandTimeout/);
    expect(() => singleRedisTier({ client: { ...fake, options: { enableOfflineQueue: false, commandTimeout: 500 } } as unknown as RedisLike })).not.toThrow();
  });

  it('a tier takes either a client or a url, naming the option, and never shows the url in the error', () => {
    const client = { get: async () => null, evalsha: async () => null, options: { enableOfflineQueue: false, commandTimeout: 500 } } as unknown as RedisLike;
    const url = 'redis://:s3cret@127.0.0.1:1';
    const error = (fn: () => unknown): ConfigError => {
      try {
        fn();
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    };
    const both = error(() => singleRedisTier({ client, url }));
    expect(both).toBeInstanceOf(ConfigError);
    expect(both.message).toMatch(/`url`.*either `client` or `url`/);
    expect(both.message).not.toContain('s3cret');
    expect(error(() => singleRedisTier({})).message).toMatch(/`client`.*is required/);
    const ring = error(() => ringRedisTier({ servers: [{ id: 'a', url }, { id: 'b' }] }));
    expect(ring.message).toMatch(/`servers\[1\]\.client`/);
    expect(ring.message).not.toContain('s3cret');
    expect(error(() => clusterRedisTier({ cluster: client, nodes: [{ host: '127.0.0.1', port: 1 }] })).message).toMatch(/`nodes`/);
    expect(error(() => clusterRedisTier({ nodes: [] })).message).toMatch(/`nodes`/);
    expect(error(() => clusterRedisTier({})).message).toMatch(/`cluster`.*is required/);
  });
});
