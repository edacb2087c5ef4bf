/** The HTTP health probe; beside the HTTP client so the balancer core never loads undici. */
import { request, type Dispatcher } from 'undici';
import type { HealthProbe } from '../health-checker';
import { splitCredentials } from './http-credentials';
import { requireOptions } from '../balancer-option-checks';

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

const HTTP_HEALTH_PROBE_OPTIONS_KEYS: Readonly<Record<keyof HttpHealthProbeOptions, true>> = { path: true, isHealthyStatus: true, dispatcher: true };

/**
 * An HTTP probe: `GET <address><path>`, healthy on a 2xx answer. Credentials in the address
 * (`http://user:secret@host`) are sent as Basic authorization, as the balanced fetch and the proxy
 * send them, never in the URL.
 */
export function httpHealthProbe(options: HttpHealthProbeOptions = {}): HealthProbe {
  requireOptions('', options, HTTP_HEALTH_PROBE_OPTIONS_KEYS);
  const path = options.path ?? '/health';
  const isHealthyStatus = options.isHealthyStatus ?? ((s: number) => s >= 200 && s < 300);
  return async (instance, signal) => {
    try {
      const { url, authorization } = splitCredentials(instance.address);
      const response = await request(new URL(path, url), {
        method: 'GET',
        signal,
        ...(authorization === undefined ? {} : { headers: { authorization } }),
        ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }),
      });
      await response.body.dump();
      return isHealthyStatus(response.statusCode);
    } catch {
      return false;
    }
  };
}
