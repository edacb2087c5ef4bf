/** The HTTP health probe; beside the HTTP client so the balancer core never loads undici. */
import { request, type Dispatcher } from 'undici';
import type { HealthProbe } from '../health-checker';

/** Options of {@link httpHealthProbe}. */
export interface HttpHealthProbeOptions {
  /**
   * Path requested on the instance's address.
   * @default '/health'
   */
  readonly path?: string;
  /**
   * Which status codes mean healthy.
   * @default 200 to 299
   */
  readonly isHealthyStatus?: (status: number) => boolean;
  /** undici dispatcher (agent) to use. */
  readonly dispatcher?: Dispatcher;
}

/** An HTTP probe: `GET <address><path>`, healthy on a 2xx answer. */
export function httpHealthProbe(options: HttpHealthProbeOptions = {}): HealthProbe {
  const path = options.path ?? '/health';
  const isHealthyStatus = options.isHealthyStatus ?? ((s: number) => s >= 200 && s < 300);
  return async (instance, signal) => {
    try {
      const response = await request(new URL(path, instance.address), {
        method: 'GET',
        signal,
        ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
      });
      await response.body.dump();
      return isHealthyStatus(response.statusCode);
    } catch {
      return false;
    }
  };
}
