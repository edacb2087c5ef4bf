/**
 * Brings a circuit breaker back without waiting for a caller: while it is open, `probe` runs every
 * `probeIntervalMillis` on the breaker's clock (one at a time), and the first success closes it,
 * whose listeners then replay what the outage queued. Before, a breaker closed only when a
 * caller's own call happened to be its half-open probe, so an instance that went idle kept its
 * queue, and L2 the stale values it should have replaced, until its next call.
 */
import type { Cancel, Clock } from '../kernel/clock';
import type { CircuitBreaker } from './circuit-breaker';

/** @internal */
export class BreakerProbe {
  private timer: Cancel | null = null;
  private running = false;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly breaker: CircuitBreaker,
    private readonly intervalMillis: number,
    private readonly probe: () => Promise<unknown>,
  ) {}

  /** Starts probing (when the breaker opens); nothing happens while a probe is scheduled or running. */
  start(): void {
    if (this.stopped || this.timer !== null || this.running) return;
    this.timer = this.clock.setTimeout(() => this.run(), this.intervalMillis);
  }

  private run(): void {
    this.timer = null;
    if (this.stopped || this.breaker.state === 'closed') return;
    this.running = true;
    let p: Promise<unknown>;
    try {
      p = this.probe();
    } catch (error) {
      p = Promise.reject(error);
    }
    p.then(
      () => {
        this.running = false;
        if (!this.stopped) this.breaker.success();
      },
      () => {
        this.running = false;
        if (this.breaker.state !== 'closed') this.start();
      },
    );
  }

  /** Stops for good (the tier or bus is closing). */
  stop(): void {
    this.stopped = true;
    this.timer?.();
    this.timer = null;
  }
}
