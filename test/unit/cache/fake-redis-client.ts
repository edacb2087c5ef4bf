import { EventEmitter } from 'node:events';
import type { PubSubLike } from '../../../src/cache/invalidation-bus';
import type { ClosableRedis } from '../../../src/cache/redis-client';

/**
 * Client states a real Redis cannot be held in on demand (reconnecting at the moment of a close)
 * are played by this stand-in with the ioredis members the cache uses. Tests of the cache against
 * Redis itself use real servers (test/integration/cache).
 */
/** A stand-in for an ioredis client: status, quit/disconnect, pub/sub, and the 'end' event. */
export class FakeClient extends EventEmitter implements PubSubLike, ClosableRedis {
  calls: string[] = [];
  constructor(
    public status: string,
    readonly options: object = { autoResubscribe: false },
  ) {
    super();
  }
  async publish(): Promise<unknown> {
    return 1;
  }
  async subscribe(): Promise<unknown> {
    this.calls.push('subscribe');
    return 1;
  }
  async unsubscribe(): Promise<unknown> {
    this.calls.push('unsubscribe');
    return 1;
  }
  async quit(): Promise<unknown> {
    this.calls.push('quit');
    if (this.status !== 'ready') throw new Error("Stream isn't writeable and enableOfflineQueue options is false");
    queueMicrotask(() => ((this.status = 'end'), this.emit('end')));
    return 'OK';
  }
  disconnect(): void {
    this.calls.push('disconnect');
    this.status = 'end';
  }
}
