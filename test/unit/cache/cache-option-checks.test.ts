import { ConfigError } from '../../../src/kernel/errors';
import { MemoryTier } from '../../../src/cache/memory-tier';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import type { RedisLike } from '../../../src/cache/l2-tier';
import { QueryCache } from '../../../src/cache/query-cache';
import { clusterRedisTier } from '../../../src/cache/redis-cluster-tier';
import { ringRedisTier } from '../../../src/cache/redis-ring-tier';
import { singleRedisTier } from '../../../src/cache/redis-single-tier';
import { createSerializer } from '../../../src/cache/serializer';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { FakeClient } from './fake-redis-client';

/** Every option of the cache is checked at construction with the one wording of kernel/validate; a typo is refused, not ignored. */
describe('cache option checks', () => {
  const client = { get: async () => null, evalsha: async () => null, options: { enableOfflineQueue: false, commandTimeout: 500 } } as unknown as RedisLike;
  const policies = { p: { levels: ['l1' as const] } };
  const refused = (fn: () => unknown, message: string | RegExp): void => {
    expect(fn).toThrow(ConfigError);
    expect(fn).toThrow(message);
  };

  it('refuses unknown keys, naming the closest known option', async () => {
    refused(() => new TieredCache({ policies, callTimeoutMs: 5 } as never), 'Invalid option `callTimeoutMs`: is not an option (did you mean `callTimeoutMillis`?)');
    refused(() => new TieredCache({ policies, hotKeys: { capacty: 5 } } as never), '`hotKeys.capacty`: is not an option (did you mean `capacity`?)');
    refused(() => singleRedisTier({ client, prefx: 'x:' } as never), '`prefx`: is not an option (did you mean `prefix`?)');
    refused(() => singleRedisTier({ client, breaker: { failureThresold: 2 } } as never), '`breaker.failureThresold`: is not an option (did you mean `failureThreshold`?)');
    refused(() => ringRedisTier({ servers: [{ id: 'a', client, uri: 'redis://x' }] } as never), '`servers[0].uri`: is not an option (did you mean `url`?)');
    refused(() => clusterRedisTier({ nodes: [{ host: 'h', port: 1, hots: 'x' }] } as never), '`nodes[0].hots`: is not an option (did you mean `host`?)');
    refused(() => new InvalidationBus({ publisher: new FakeClient('ready'), subscriber: new FakeClient('ready'), chanel: 'x' } as never), '`bus.chanel`: is not an option (did you mean `channel`?)');
    refused(() => new MemoryTier({ maxByte: 5 } as never), '`memoryTier.maxByte`: is not an option (did you mean `maxBytes`?)');
    refused(() => createSerializer({ maxValueByte: 5 } as never), '`serializer.maxValueByte`: is not an option (did you mean `maxValueBytes`?)');
    const cache = new TieredCache({ policies: { query_results: { levels: ['l1'] }, p: { levels: ['l1'] } } });
    refused(() => new QueryCache({ cache, polcy: 'query_results' } as never), '`polcy`: is not an option (did you mean `policy`?)');
    refused(() => cache.getOrLoad('p', 'k', async () => 1, { tag: ['t'] } as never), '`getOrLoad.tag`: is not an option (did you mean `tags`?)');
    await expect(cache.warmUp('p', ['k'], async () => 1, { concurency: 2 } as never)).rejects.toThrow('`warmUp.concurency`: is not an option (did you mean `concurrency`?)');
  });

  it('checks values with one wording', async () => {
    refused(() => new TieredCache({ policies, maxValueBytes: 0 }), 'Invalid option `maxValueBytes`: must be an integer >= 1, got 0');
    refused(() => new TieredCache({ policies, maxPendingInvalidations: -1 }), 'Invalid option `maxPendingInvalidations`: must be an integer >= 0, got -1');
    refused(() => new TieredCache({ policies, callTimeoutMillis: 1.5 }), 'Invalid option `callTimeoutMillis`: must be an integer >= 1, got 1.5');
    refused(() => new TieredCache({ policies, freezeValues: 'no' as never }), 'Invalid option `freezeValues`: must be true or false, got "no"');
    refused(() => new TieredCache({ policies, hotKeys: { sampleEvery: 0 } }), 'Invalid option `hotKeys.sampleEvery`: must be an integer >= 1, got 0');
    refused(() => singleRedisTier({ client, versionTtlMillis: 10 }), 'Invalid option `versionTtlMillis`: must be an integer >= 1000, got 10');
    refused(() => singleRedisTier({ client, breaker: { probeIntervalMillis: 0 } }), 'Invalid option `breaker.probeIntervalMillis`: must be an integer >= 1, got 0');
    refused(() => new InvalidationBus({ publisher: new FakeClient('ready'), subscriber: new FakeClient('ready'), heartbeatIntervalMillis: 0 }), 'Invalid option `bus.heartbeatIntervalMillis`: must be an integer >= 1, got 0');
    const bus = new InvalidationBus({ publisher: new FakeClient('ready'), subscriber: new FakeClient('ready'), heartbeatIntervalMillis: 1_000 });
    refused(() => new TieredCache({ policies, bus, busSilenceMillis: 1_000 }), "Invalid option `busSilenceMillis`: must exceed the bus's heartbeatIntervalMillis (1000), got 1000");
    const cache = new TieredCache({ policies });
    await expect(cache.set('p', 'k', 1, { version: -1 })).rejects.toThrow('Invalid option `version`: must be an integer >= 0 (a number or a bigint), got -1');
    await expect(cache.set('p', 'k', 1, { verison: 1 } as never)).rejects.toThrow('`set.verison`: is not an option (did you mean `version`?)');
    expect(() => cache.getOrLoad('p', 'k', async () => 1, { tags: 'users' as never })).toThrow('Invalid option `getOrLoad.tags`: must be an array of strings, got "users"');
  });
});
