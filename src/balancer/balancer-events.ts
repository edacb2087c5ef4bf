/** Events a balancer emits, and a small typed emitter. */
import { EventEmitter } from 'node:events';

/** Event name → payload. */
export interface BalancerEventMap {
  'instance-added': { readonly instanceId: string };
  'instance-removed': { readonly instanceId: string };
  /** Active health changed (health checker or `setHealth`). */
  'health-changed': { readonly instanceId: string; readonly healthy: boolean; readonly reason?: string };
  /** Passive ejection after consecutive failures. */
  ejected: { readonly instanceId: string; readonly untilMillis: number; readonly ejectionCount: number };
  /** An ejection ended. */
  returned: { readonly instanceId: string };
  /** Panic mode began or ended: too few usable instances, so all are used. */
  panic: { readonly active: boolean; readonly usable: number; readonly total: number };
}

/** Typed wrapper over `EventEmitter`: listener payloads are checked against the map. */
export class TypedEmitter<Events extends object> {
  readonly #emitter = new EventEmitter();

  on<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.on(event, listener);
    return this;
  }

  once<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.once(event, listener);
    return this;
  }

  off<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.off(event, listener);
    return this;
  }

  protected emit<K extends keyof Events & string>(event: K, payload: Events[K]): void {
    this.#emitter.emit(event, payload);
  }
}
