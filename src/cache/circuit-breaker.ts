import type { Clock } from '../kernel/clock';
import { requireInteger, requireKnownKeys, requireObject } from '../kernel/validate';

/** `closed`: calls pass. `open`: calls are refused at once. `halfOpen`: one probe call is let through. */
export type BreakerState = 'closed' | 'open' | 'halfOpen';

/** Options of {@link CircuitBreaker}. */
export interface CircuitBreakerOptions {
  /**
   * Consecutive failures that open the circuit.
   * @default 3
   */
  failureThreshold?: number;
  /**
   * How long the circuit stays open before a caller's call may be the probe, in milliseconds.
   * @default 1_000
   */
  openMillis?: number;
  /**
   * While the circuit is open, the server is also probed in the background this often (a PING,
   * or a ring server's rejoin); the first success closes the circuit and replays what the outage
   * queued, so recovery never waits for a caller.
   * @default 100
   */
  probeIntervalMillis?: number;
}

/** Defaults of {@link CircuitBreakerOptions}. */
export const CIRCUIT_BREAKER_DEFAULTS: Readonly<Required<CircuitBreakerOptions>> = Object.freeze({ failureThreshold: 3, openMillis: 1_000, probeIntervalMillis: 100 });

/**
 * A consecutive-failure circuit breaker on an injected clock (its monotonic reading: a cooldown is
 * an interval). It only keeps state; the caller asks {@link CircuitBreaker.allow} before a call
 * and reports the outcome.
 * @internal
 */
export class CircuitBreaker {
  private readonly failureThreshold: number;
  private readonly openMillis: number;
  /** See {@link CircuitBreakerOptions.probeIntervalMillis}; the breaker only keeps it for its owner's probe. */
  readonly probeIntervalMillis: number;
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probing = false;

  constructor(
    private readonly clock: Clock,
    options: CircuitBreakerOptions = {},
    private readonly onChange: (state: BreakerState) => void = () => {},
    optionPrefix = 'breaker',
  ) {
    requireKnownKeys(optionPrefix, requireObject(optionPrefix, options), Object.keys(CIRCUIT_BREAKER_DEFAULTS));
    this.failureThreshold = requireInteger(`${optionPrefix}.failureThreshold`, options.failureThreshold ?? CIRCUIT_BREAKER_DEFAULTS.failureThreshold, 1);
    this.openMillis = requireInteger(`${optionPrefix}.openMillis`, options.openMillis ?? CIRCUIT_BREAKER_DEFAULTS.openMillis, 0);
    this.probeIntervalMillis = requireInteger(`${optionPrefix}.probeIntervalMillis`, options.probeIntervalMillis ?? CIRCUIT_BREAKER_DEFAULTS.probeIntervalMillis, 1);
  }

  /** The state at the current clock reading (`open` turns `halfOpen` once `openMillis` passed). */
  get state(): BreakerState {
    if (this.current === 'open' && this.clock.monotonicNow() - this.openedAt >= this.openMillis) this.transition('halfOpen');
    return this.current;
  }

  /** Whether a call may go out now. In `halfOpen`, only one probe at a time. */
  allow(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open' || this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  failure(): void {
    this.probing = false;
    this.failures++;
    if (this.current === 'halfOpen' || (this.current === 'closed' && this.failures >= this.failureThreshold)) {
      this.openedAt = this.clock.monotonicNow();
      this.transition('open');
    }
  }

  private transition(to: BreakerState): void {
    if (this.current === to) return;
    this.current = to;
    this.onChange(to);
  }
}
