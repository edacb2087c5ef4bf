/**
 * Knowing whether a request left: undici calls a handler's `onRequestStart` when it writes the
 * request to a connection. A call that times out before that (still connecting, or queued for a
 * connection) sent nothing, so it may go to another instance like a refused connection.
 */
import { getGlobalDispatcher, type Dispatcher } from 'undici';

/** Forwards every callback to the wrapped handler, noting the moment the request is written. */
class RequestStartHandler implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler;
  readonly #onStart: () => void;

  constructor(handler: Dispatcher.DispatchHandler, onStart: () => void) {
    this.#handler = handler;
    this.#onStart = onStart;
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#onStart();
    this.#handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>): void {
    this.#handler.onRequestUpgrade?.(...args);
  }

  onResponseStart(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>): void {
    this.#handler.onResponseStart?.(...args);
  }

  onResponseData(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseData']>>): void {
    this.#handler.onResponseData?.(...args);
  }

  onResponseEnd(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>): void {
    this.#handler.onResponseEnd?.(...args);
  }

  onResponseError(...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseError']>>): void {
    this.#handler.onResponseError?.(...args);
  }
}

/**
 * @internal
 * `dispatcher` (undici's global one by default) seen through a wrapper that calls `onStart` once
 * the request has been written to a connection. One per call.
 */
export function onRequestStart(dispatcher: Dispatcher | undefined, onStart: () => void): Dispatcher {
  // compose() hands each interceptor a handler of undici's current (onRequestStart…) shape.
  return (dispatcher ?? getGlobalDispatcher()).compose(
    (dispatch) => (options, handler) => dispatch(options, new RequestStartHandler(handler, onStart)),
  );
}
