/**
 * The invalidation bus: Redis pub/sub between cache instances. Pub/sub delivers at most once and
 * drops everything sent while a subscriber is disconnected, so after every reconnect the bus tells
 * its owner to forget what it may have missed (the cache clears its L1).
 *
 * It also says when it cannot be trusted: a heartbeat (PING on the subscriber) confirms every
 * `heartbeatIntervalMillis` that messages can arrive; the cache stops serving L1 when confirmations
 * stop (a paused Redis keeps the socket open, so a disconnect alone would never be seen). Publishes
 * go through a circuit breaker, so a Redis that hangs costs a writer nothing once it is open, and a
 * background probe closes it as soon as Redis answers. `start()` never fails because Redis is down:
 * the bus keeps connecting in the background.
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Cancel, type Clock } from '../kernel/clock';
import { ConfigError } from '../kernel/errors';
import { requireInteger, requireKnownKeys, requireNonEmptyString, requireObject } from '../kernel/validate';
import { BreakerProbe } from './breaker-probe';
import { CacheBackendUnavailableError } from './cache-errors';
import { recordBusLag } from './bus-lag-metric';
import { CircuitBreaker, type CircuitBreakerOptions } from './circuit-breaker';

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
  /** The heartbeat (allowed on a subscribed connection); without it, the connection's state stands in. */
  ping?(): Promise<unknown>;
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
   * How long `start()` waits for the subscriber to connect, in milliseconds. It then resolves
   * anyway (a service boots while Redis is down) and the bus connects in the background.
   * @default 5_000
   */
  connectTimeoutMillis?: number;
  /**
   * How often the subscriber's connection is checked (PING), in milliseconds; each answer confirms
   * that messages can arrive.
   * @default 1_000
   */
  heartbeatIntervalMillis?: number;
  /**
   * Circuit breaker of publishes: after `failureThreshold` consecutive failures, publishes fail at
   * once (the cache queues them) and a background probe closes it when Redis answers.
   * @default { failureThreshold: 3, openMillis: 1_000, probeIntervalMillis: 100 }
   */
  breaker?: CircuitBreakerOptions;
  /**
   * Clock of the heartbeat, the breaker and the probe.
   * @default systemClock
   */
  clock?: Clock;
}

/** Defaults of {@link InvalidationBusOptions}. */
export const INVALIDATION_BUS_DEFAULTS = Object.freeze({ channel: 'ks:bus', connectTimeoutMillis: 5_000, heartbeatIntervalMillis: 1_000 });

const OPTION_KEYS = ['publisher', 'subscriber', 'channel', 'connectTimeoutMillis', 'heartbeatIntervalMillis', 'breaker', 'clock'];

/** On the wire: the publishing instance, the message, and when it was published (`clock.now()`, ms; absent from older versions). */
type Wire = { o: string; m: BusMessage; t?: number };

export class InvalidationBus {
  /** Identifies this instance's messages so it ignores its own. */
  readonly instanceId = randomUUID();
  private readonly publisher: PubSubLike;
  private readonly subscriber: PubSubLike;
  private readonly channel: string;
  private readonly connectTimeoutMillis: number;
  /** How often the subscriber is checked, in milliseconds. */
  readonly heartbeatIntervalMillis: number;
  private readonly clock: Clock;
  private readonly breaker: CircuitBreaker;
  private readonly probe: BreakerProbe;
  private readonly handlers = new Set<(m: BusMessage) => void>();
  private readonly reconnectHandlers = new Set<() => void>();
  private readonly liveHandlers = new Set<() => void>();
  private readonly recoverHandlers = new Set<() => void>();
  private started = false;
  private closed = false;
  /** A subscribe in flight, if any (awaited by `close()`). */
  private subscribing: Promise<void> | null = null;
  /** Resolves the first time the bus is subscribed. */
  private firstSubscribed: () => void = () => {};
  private heartbeat: Cancel | null = null;
  /** Whether the subscriber is connected and subscribed. */
  connected = false;

  constructor(options: InvalidationBusOptions) {
    requireKnownKeys('bus', requireObject('bus', options), OPTION_KEYS);
    if (options.publisher === undefined) throw new ConfigError('bus.publisher', 'is required');
    if (options.subscriber === undefined) throw new ConfigError('bus.subscriber', 'is required (a dedicated connection)');
    if (options.subscriber === options.publisher) throw new ConfigError('bus.subscriber', 'must be a different connection than bus.publisher');
    if ((options.subscriber.options as { autoResubscribe?: unknown } | undefined)?.autoResubscribe === true) {
      throw new ConfigError('bus.subscriber.options.autoResubscribe', 'must be false (the bus resubscribes itself after a reconnect); see `redisSubscriberDefaults`');
    }
    this.publisher = options.publisher;
    this.subscriber = options.subscriber;
    this.channel = requireNonEmptyString('bus.channel', options.channel ?? INVALIDATION_BUS_DEFAULTS.channel);
    this.connectTimeoutMillis = requireInteger('bus.connectTimeoutMillis', options.connectTimeoutMillis ?? INVALIDATION_BUS_DEFAULTS.connectTimeoutMillis, 0);
    this.heartbeatIntervalMillis = requireInteger('bus.heartbeatIntervalMillis', options.heartbeatIntervalMillis ?? INVALIDATION_BUS_DEFAULTS.heartbeatIntervalMillis, 1);
    this.clock = options.clock ?? systemClock;
    let probe: BreakerProbe | undefined;
    this.breaker = new CircuitBreaker(this.clock, options.breaker ?? {}, (state) => {
      if (state === 'open') probe?.start();
      if (state === 'closed') for (const h of this.recoverHandlers) h();
    }, 'bus.breaker');
    // A publish on a channel nobody listens to: it exercises the publisher and disturbs no one.
    this.probe = probe = new BreakerProbe(this.clock, this.breaker, this.breaker.probeIntervalMillis, () => this.publisher.publish(`${this.channel}:probe`, ''));
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
    // Handlers apply a message synchronously: now it is applied here.
    if (typeof wire.t === 'number') recordBusLag(wire.m.type, this.clock.now() - wire.t);
  };

  private readonly onReady = (): void => {
    // The connection is new (first connect after a background start, or a reconnect): subscribe
    // again and only then report it, so nothing published after the owner clears its L1 is missed.
    void this.subscribeChannel(true);
  };

  private readonly onClose = (): void => {
    this.connected = false;
  };

  /** Subscribes on the current connection; `reconnected`: tell the owner it may have missed messages. */
  private subscribeChannel(reconnected: boolean): Promise<void> {
    if (!this.started || this.closed) return Promise.resolve();
    if (this.subscribing !== null) return this.subscribing;
    const p: Promise<void> = this.subscriber.subscribe(this.channel).then(
      () => {
        if (this.closed) return;
        const first = !this.connected && reconnected;
        this.connected = true;
        this.firstSubscribed();
        if (first) for (const h of this.reconnectHandlers) h();
        for (const h of this.liveHandlers) h();
      },
      () => {}, // not connected (yet): the next 'ready' or heartbeat tries again
    ).finally(() => {
      if (this.subscribing === p) this.subscribing = null;
    });
    this.subscribing = p;
    return p;
  }

  /**
   * Subscribes and starts the heartbeat; resolves once messages can be received, or after
   * `connectTimeoutMillis` while Redis does not answer (the bus then connects in the background,
   * and its owner is told when it does). Never rejects because Redis is down.
   */
  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    const subscribed = new Promise<void>((resolve) => (this.firstSubscribed = resolve));
    this.subscriber.on('message', this.onMessage);
    this.subscriber.on('ready', this.onReady);
    this.subscriber.on('close', this.onClose);
    const live = this.subscriber.status === undefined || this.subscriber.status === 'ready';
    if (live) void this.subscribeChannel(false);
    this.scheduleHeartbeat();
    let cancel: Cancel = () => {};
    await Promise.race([subscribed, new Promise<void>((resolve) => (cancel = this.clock.setTimeout(resolve, this.connectTimeoutMillis)))]);
    cancel();
  }

  private scheduleHeartbeat(): void {
    if (this.closed) return;
    this.heartbeat = this.clock.setTimeout(() => void this.beat(), this.heartbeatIntervalMillis);
  }

  /** One heartbeat: subscribe if not subscribed yet, else check that the subscribed connection answers. */
  private async beat(): Promise<void> {
    this.heartbeat = null;
    if (this.closed) return;
    const ready = this.subscriber.status === undefined || this.subscriber.status === 'ready';
    if (!this.connected) {
      if (ready) await this.subscribeChannel(true);
    } else if (ready) {
      try {
        if (this.subscriber.ping !== undefined) await this.subscriber.ping();
        if (!this.closed && this.connected) for (const h of this.liveHandlers) h();
      } catch {
        // No answer: no confirmation this round; the owner notices the silence.
      }
    }
    this.scheduleHeartbeat();
  }

  /** Publishes to every other instance. Rejects when Redis cannot take it (at once while the breaker is open). */
  async publish(message: BusMessage): Promise<void> {
    if (!this.breaker.allow()) throw new CacheBackendUnavailableError('The bus cannot publish: Redis is unavailable (circuit open)', { context: { channel: this.channel } });
    const wire: Wire = { o: this.instanceId, m: message, t: this.clock.now() };
    try {
      await this.publisher.publish(this.channel, JSON.stringify(wire));
    } catch (cause) {
      this.breaker.failure();
      throw new CacheBackendUnavailableError(`The bus could not publish: ${(cause as Error)?.message ?? String(cause)}`, { cause, context: { channel: this.channel } });
    }
    this.breaker.success();
  }

  /** Receives messages of other instances. */
  subscribe(handler: (m: BusMessage) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Called after the subscriber (re)connected and subscribed again (messages may have been lost meanwhile). */
  onReconnect(handler: () => void): () => void {
    this.reconnectHandlers.add(handler);
    return () => this.reconnectHandlers.delete(handler);
  }

  /** Called each time the bus is confirmed able to deliver (a subscribe, or a heartbeat answered). */
  onLive(handler: () => void): () => void {
    this.liveHandlers.add(handler);
    return () => this.liveHandlers.delete(handler);
  }

  /** Called when publishing works again after its breaker opened (to replay what could not be published). */
  onRecover(handler: () => void): () => void {
    this.recoverHandlers.add(handler);
    return () => this.recoverHandlers.delete(handler);
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
    this.heartbeat?.();
    this.heartbeat = null;
    this.probe.stop();
    this.handlers.clear();
    this.reconnectHandlers.clear();
    this.liveHandlers.clear();
    this.recoverHandlers.clear();
    this.firstSubscribed();
    this.subscriber.removeListener('message', this.onMessage);
    this.subscriber.removeListener('ready', this.onReady);
    this.subscriber.removeListener('close', this.onClose);
    await this.subscribing;
    const live = this.subscriber.status === undefined || this.subscriber.status === 'ready';
    if (this.started && live) await this.subscriber.unsubscribe(this.channel).catch(() => {});
  }
}
