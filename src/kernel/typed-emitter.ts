/** A small typed wrapper over Node's `EventEmitter`, shared by every component that emits events. */
import { EventEmitter } from 'node:events';

/**
 * Typed wrapper over `EventEmitter`: listener payloads are checked against `Events` (event name →
 * payload). Subclasses emit; users subscribe.
 */
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

  /** @internal */
  protected emit<K extends keyof Events & string>(event: K, payload: Events[K]): void {
    this.#emitter.emit(event, payload);
  }

  /** @internal Number of listeners of `event` (lets an emitter skip building a payload nobody reads). */
  protected listenerCount<K extends keyof Events & string>(event: K): number {
    return this.#emitter.listenerCount(event);
  }
}
