import { closeRedisClient } from '../../../src/cache/redis-client';
import { FakeClient } from './fake-redis-client';

describe('closeRedisClient', () => {
  it('closeRedisClient quits a ready client and disconnects one that is reconnecting (quit would leave it retrying)', async () => {
    const readyClient = new FakeClient('ready');
    await closeRedisClient(readyClient);
    expect(readyClient.calls).toEqual(['quit']);
    expect(readyClient.status).toBe('end');
    const reconnecting = new FakeClient('reconnecting');
    await closeRedisClient(reconnecting);
    expect(reconnecting.calls).toEqual(['disconnect']);
    const ended = new FakeClient('end');
    await closeRedisClient(ended);
    expect(ended.calls).toEqual([]);
  });

});
