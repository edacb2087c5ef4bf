import { ConfigError } from '../../../src/kernel/errors';
import { InvalidationBus } from '../../../src/cache/invalidation-bus';
import { redisSubscriberDefaults } from '../../../src/cache/redis-client';
import { FakeClient } from './fake-redis-client';

describe('invalidation bus options', () => {
  it('the bus refuses a subscriber that resubscribes by itself, naming the option', () => {
    const pub = new FakeClient('ready');
    expect(() => new InvalidationBus({ publisher: pub, subscriber: new FakeClient('ready', { autoResubscribe: true }) })).toThrow(ConfigError);
    expect(() => new InvalidationBus({ publisher: pub, subscriber: new FakeClient('ready', { autoResubscribe: true }) })).toThrow(/bus\.subscriber\.options\.autoResubscribe/);
    expect(redisSubscriberDefaults.autoResubscribe).toBe(false);
    expect(redisSubscriberDefaults.enableOfflineQueue).toBe(false);
  });

});
