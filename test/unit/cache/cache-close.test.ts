import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { TieredCache } from '../../../src/cache/tiered-cache';
import { FakeClient } from './fake-redis-client';

describe('TieredCache.close()', () => {
  it('TieredCache.close() closes the bus, then ends closeClients in any state; twice is fine', async () => {
    const data = new FakeClient('ready');
    const sub = new FakeClient('ready');
    const bus = new InvalidationBus({ publisher: data, subscriber: sub });
    await bus.start();
    sub.status = 'reconnecting'; // Redis went away meanwhile
    const cache = new TieredCache({ policies: { p: { levels: ['l1'] } }, bus, closeClients: [data, sub] });
    await Promise.all([cache.close(), cache.close()]);
    expect(sub.calls).toEqual(['subscribe', 'disconnect']); // no unsubscribe on a dead connection
    expect(data.calls).toEqual(['quit']);
    expect(sub.listenerCount('message') + sub.listenerCount('ready') + sub.listenerCount('close')).toBe(0);
    expect(await cache.getOrLoad('p', 'k', async () => 1)).toBe(1); // still usable on L1 and the loader
  });
});
