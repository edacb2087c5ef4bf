import { randomUUID } from 'node:crypto';
import { ConfigError } from '../kernel/errors';

/** What one instance tells the others. Keys and tags only, never values. */
export type BusMessage =
  | { readonly type: 'keys'; readonly policy: string; readonly keys: readonly string[] }
  | { readonly type: 'tags'; readonly tags: readonly (readonly [tag: string, epoch: number | null])[] }
  | { readonly type: 'namespace'; readonly policy: string; readonly epoch: number | null };

/** The ioredis methods the bus uses; an ioredis `Redis` or `Cluster` fits. */
export interface PubSubLike {
  publish(channel: string, message: string): Promise<unknown>;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  on(event: string, listener: (...args: any[]) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
  readonly status?: string;
  /** ioredis options (the subscriber's are checked for `autoResubscribe: false`). */
  readonly options?: object;
}

/** Options of {@link InvalidationBus}. */
export interface InvalidationBusOptions {
  /** Client used to publish (may be shared with the L2 tier). */
  publisher: PubSubLike;
  /**
   * A dedicated client for subscribing (a subscribed connection can do nothing else), created with
   * `autoResubscribe: false` (`redisSubscriberDefaults`): the bus subscribes again itself after a
   * reconnect, and ioredis's own resubscribe is an unawaited command that rejects unhandled when
   * the client is closed meanwhile.
   */
  subscriber: PubSubLike;
  /**
   * Pub/sub channel; instances that share data must use the same one.
   * @default 'ks:bus'
   */
  channel?: string;
  /**
   * How long `start()` waits for the subscriber to connect, in milliseconds.
   * @default 5_000
   */
  connectTimeoutMillis?: number;
}

/** Defaults of {@link InvalidationBusOptions}. */
export const INVALIDATION_BUS_DEFAULTS = Object.freeze({ channel: 'ks:bus', connectTimeoutMillis: 5_000 });

type Wire = { o: string; m: BusMessage };

/**
 * Redis pub/sub between cache instances. Pub/sub delivers at most once and drops everything sent
 * while a subscriber is disconnected, so after every reconnect the bus tells its owner to
 * forget what it may have missed (the cache clears its L1).
 */
export class InvalidationBus {
  /** Identifies this instance's messages so it ignores its own. */
  readonly instanceId = randomUUID();
  private readonly publisher: PubSubLike;
  private readonly subscriber: PubSubLike;
  private readonly channel: string;
  private readonly connectTimeoutMillis: number;
  private readonly handlers = new Set<(m: BusMessage) => void>();
  private readonly reconnectHandlers = new Set<() => void>();
  private started = false;
  private closed = false;
  /** The resubscribe started by the last reconnect, if still running (awaited by `close()`). */
  private resubscribing: Promise<void> | null = null;
  /** Whether the subscriber is connected and subscribed. */
  connected = false;

  constructor(options: InvalidationBusOptions) {
    if (options?.publisher === undefined) throw new ConfigError('bus.publisher', 'is required');
    if (options.subscriber === undefined) throw new ConfigError('bus.subscriber', 'is required (a dedicated connection)');
    if (options.subscriber === options.publisher) throw new ConfigError('bus.subscriber', 'must be a different connection than bus.publisher');
    if ((options.subscriber.options as { autoResubscribe?: unknown } | undefined)?.autoResubscribe === true) {
      throw new ConfigError('bus.subscriber.options.autoResubscribe', 'must be false (the bus resubscribes itself after a reconnect); see `redisSubscriberDefaults`');
    }
    this.publisher = options.publisher;
    this.subscriber = options.subscriber;
    this.channel = options.channel ?? INVALIDATION_BUS_DEFAULTS.channel;
    this.connectTimeoutMillis = options.connectTimeoutMillis ?? INVALIDATION_BUS_DEFAULTS.connectTimeoutMillis;
    if (typeof this.channel !== 'string' || this.channel === '') throw new ConfigError('bus.channel', 'must be a non-empty string');
  }

  private readonly onMessage = (channel: string, text: string): void => {
    if (channel !== this.channel) return;
    let wire: Wire;
    try {
      wire = JSON.parse(text) as Wire;
    } catch {
      return; // not ours
    }
    if (wire.o === this.instanceId) return;
    for (const h of this.handlers) h(wire.m);
  };

  private readonly onReady = (): void => {
    if (!this.started || this.closed) return;
    // ioredis resubscribes on reconnect; subscribe again anyway and only then report the
    // reconnect, so nothing published after the owner clears its L1 can be missed.
    const p: Promise<void> = this.subscriber.subscribe(this.channel).then(
      () => {
        if (this.closed) return;
        this.connected = true;
        for (const h of this.reconnectHandlers) h();
      },
      () => {}, // disconnected again: the next 'ready' retries
    ).finally(() => {
      if (this.resubscribing === p) this.resubscribing = null;
    });
    this.resubscribing = p;
  };

  private readonly onClose = (): void => {
    this.connected = false;
  };

  /** Subscribes; resolves once messages can be received. */
  async start(): Promise<void> {
    if (this.started) return;
    if (this.subscriber.status !== undefined && this.subscriber.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          this.subscriber.removeListener('ready', ok);
          reject(new ConfigError('bus.subscriber', `did not connect within ${this.connectTimeoutMillis} ms`));
        }, this.connectTimeoutMillis);
        const ok = (): void => {
          clearTimeout(t);
          resolve();
        };
        this.subscriber.on('ready', ok);
      });
    }
    this.subscriber.on('message', this.onMessage);
    await this.subscriber.subscribe(this.channel);
    this.connected = true;
    this.started = true;
    this.subscriber.on('ready', this.onReady);
    this.subscriber.on('close', this.onClose);
  }

  /** Publishes to every other instance. Rejects when Redis cannot take it. */
  async publish(message: BusMessage): Promise<void> {
    const wire: Wire = { o: this.instanceId, m: message };
    await this.publisher.publish(this.channel, JSON.stringify(wire));
  }

  /** Receives messages of other instances. */
  subscribe(handler: (m: BusMessage) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Called after the subscriber reconnected (messages may have been lost). */
  onReconnect(handler: () => void): () => void {
    this.reconnectHandlers.add(handler);
    return () => this.reconnectHandlers.delete(handler);
  }

  /**
   * Stops listening: no handler is called afterwards, and no command of the bus is still in flight
   * when this resolves. Does not close the clients (the caller owns them; `TieredCache` closes the
   * ones given as `closeClients`).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    this.handlers.clear();
    this.reconnectHandlers.clear();
    this.subscriber.removeListener('message', this.onMessage);
    this.subscriber.removeListener('ready', this.onReady);
    this.subscriber.removeListener('close', this.onClose);
    await this.resubscribing;
    const live = this.subscriber.status === undefined || this.subscriber.status === 'ready';
    if (this.started && live) await this.subscriber.unsubscribe(this.channel).catch(() => {});
  }
}
