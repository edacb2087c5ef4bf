/**
 * A small HTTP reverse proxy over a balancer: streams request and response bodies, passes status
 * codes and headers through (minus hop-by-hop ones), appends `X-Forwarded-For`, retries idempotent
 * body-less requests on another instance when the connection fails, and serves its statistics.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Agent, type Dispatcher } from 'undici';
import type { Balancer } from '../balancer';
import { requireOptions } from '../balancer-option-checks';
import { ConfigError } from '../../kernel/errors';
import { NoInstanceAvailableError, RequestTimeoutError } from '../balancer-errors';
import { redactText } from '../../kernel/redact';
import { splitCredentials } from './http-credentials';
import { describeValue, requireInteger, requirePositive } from '../../kernel/validate';
import { isConnectionError, isIdempotent } from './http-retry';
import { metricsHandler } from '../../kernel/prometheus-registry';

/** Options of {@link createProxyServer}. */
export interface ProxyOptions {
  /** The balancer whose instances' `address` is an HTTP origin. */
  readonly balancer: Balancer;
  /**
   * Most attempts of one idempotent, body-less request, each on a different instance.
   * @default 3
   */
  readonly maxAttempts?: number;
  /**
   * Path answering the statistics as JSON to `GET`/`HEAD`; `null` serves none. It is reserved: a
   * `GET` or `HEAD` of exactly this path (any query) never reaches an upstream; other methods do.
   * @default '/__balancer/stats'
   */
  readonly statsPath?: string | null;
  /**
   * Path answering Prometheus metrics to `GET`/`HEAD` (the registry of `kysely-scale/metrics`: this
   * balancer's families and every other kysely-scale metric of the process); `null` serves none.
   * Reserved like `statsPath`.
   * @default '/__balancer/metrics'
   */
  readonly metricsPath?: string | null;
  /**
   * Longest wait for an upstream's response headers, in ms (answered 504 after it). Applied to
   * every request, also with a `dispatcher` of your own.
   * @default 30000
   */
  readonly headersTimeoutMillis?: number;
  /**
   * Longest silence while streaming an upstream's body, in ms (the response is then cut).
   * Applied to every request, also with a `dispatcher` of your own.
   * @default 30000
   */
  readonly bodyTimeoutMillis?: number;
  /**
   * Header whose value is the affinity key for consistent hashing; without it, the client address.
   * @default 'x-affinity-key'
   */
  readonly affinityHeader?: string;
  /**
   * Status codes counted as failures for ejection (still passed through).
   * @default status >= 500
   */
  readonly isFailureStatus?: (status: number) => boolean;
  /** undici dispatcher; by default an agent with the timeouts above. */
  readonly dispatcher?: Dispatcher;
}

/** Defaults of {@link ProxyOptions}. */
export const PROXY_DEFAULTS = Object.freeze({
  maxAttempts: 3,
  statsPath: '/__balancer/stats',
  metricsPath: '/__balancer/metrics',
  headersTimeoutMillis: 30_000,
  bodyTimeoutMillis: 30_000,
  affinityHeader: 'x-affinity-key',
});

const PROXY_OPTIONS_KEYS: Readonly<Record<keyof ProxyOptions, true>> = {
  balancer: true,
  maxAttempts: true,
  statsPath: true,
  metricsPath: true,
  headersTimeoutMillis: true,
  bodyTimeoutMillis: true,
  affinityHeader: true,
  isFailureStatus: true,
  dispatcher: true,
};

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus those undici sets itself; every `proxy-*` header
 * (`Proxy-Authorization`, `Proxy-Authenticate`, `Proxy-Connection`, …) is dropped as well.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
]);

type HeaderRecord = Record<string, string | string[]>;

function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderRecord {
  const listed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
  );
  const out: HeaderRecord = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || listed.has(lower)) continue;
    out[name] = value;
  }
  return out;
}

function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** @internal Headers sent upstream: end-to-end ones plus `X-Forwarded-For/-Host/-Proto`. */
export function forwardedHeaders(req: IncomingMessage): HeaderRecord {
  const headers = endToEnd(req.headers);
  const client = clientAddress(req);
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior === undefined || prior === '' ? client : `${String(prior)}, ${client}`;
  if (req.headers['x-forwarded-host'] === undefined && req.headers.host !== undefined) headers['x-forwarded-host'] = req.headers.host;
  if (req.headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = 'http';
  return headers;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof RequestTimeoutError || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

/** Creates the proxy's HTTP server (not yet listening). Closing it does not close the balancer. */
export function createProxyServer(options: ProxyOptions): Server {
  requireOptions('', options, PROXY_OPTIONS_KEYS);
  if (typeof options.balancer?.run !== 'function') throw new ConfigError('balancer', `must be a Balancer, got ${describeValue(options.balancer)}`);
  const o = { ...PROXY_DEFAULTS, ...options };
  requireInteger('maxAttempts', o.maxAttempts, 1);
  requirePositive('headersTimeoutMillis', o.headersTimeoutMillis);
  requirePositive('bodyTimeoutMillis', o.bodyTimeoutMillis);
  const { balancer } = options;
  const isFailureStatus = options.isFailureStatus ?? ((status: number) => status >= 500);
  const dispatcher =
    options.dispatcher ?? new Agent({ headersTimeout: o.headersTimeoutMillis, bodyTimeout: o.bodyTimeoutMillis });
  const affinityHeader = o.affinityHeader.toLowerCase();
  const serveMetrics = metricsHandler();

  const serveStats = (req: IncomingMessage, res: ServerResponse): boolean => {
    // Only reads are answered here: a POST or PUT to the same path is the application's.
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = (req.url ?? '/').split('?')[0];
    if (o.metricsPath !== null && path === o.metricsPath) {
      // Every kysely-scale metric of the process, this proxy's balancer among them.
      serveMetrics(req, res);
      return true;
    }
    const body = o.statsPath !== null && path === o.statsPath ? { type: 'application/json', text: JSON.stringify(balancer.stats()) } : undefined;
    if (body === undefined) return false;
    res.writeHead(200, { 'content-type': body.type, 'content-length': Buffer.byteLength(body.text) });
    res.end(req.method === 'HEAD' ? undefined : body.text);
    return true;
  };
  const addresses = (): string[] => balancer.instances().map((i) => i.address);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (serveStats(req, res)) return;
    const target = req.url ?? '/';
    if (!target.startsWith('/')) {
      // Absolute-form (`GET http://host/…`) or `*`: this is a reverse proxy, not a forward one.
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('400 request target must be a path\n');
      return;
    }
    const method = req.method ?? 'GET';
    const withBody = hasBody(req);
    // A streamed body cannot be sent twice: only idempotent requests without one are retried.
    const retryable = isIdempotent(method) && !withBody;
    const headers = forwardedHeaders(req);
    const affinity = req.headers[affinityHeader];
    const key = typeof affinity === 'string' ? affinity : clientAddress(req);
    const clientGone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) clientGone.abort(new Error('client closed the connection'));
    });
    const tried = new Set<string>();
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        await balancer.run(
          async (instance, signal) => {
            tried.add(instance.id);
            // Credentials in an upstream address become its Basic authorization (unless the
            // client sent one) and never appear in a URL, an error or a log line.
            const { url: origin, authorization } = splitCredentials(instance.address, `upstreams[${instance.id}].address`);
            const upstream = await dispatcher.request({
              origin,
              path: target,
              method: method as Dispatcher.HttpMethod,
              headers: authorization !== undefined && headers.authorization === undefined ? { ...headers, authorization } : headers,
              body: withBody ? req : null,
              signal,
              headersTimeout: o.headersTimeoutMillis,
              bodyTimeout: o.bodyTimeoutMillis,
            });
            res.writeHead(upstream.statusCode, endToEnd(upstream.headers));
            // Streams with backpressure; an error on either side (upstream cut, client gone)
            // rejects, so the call is released.
            await pipeline(upstream.body, res);
            return upstream.statusCode;
          },
          // The proxy bounds its own waits (headersTimeoutMillis, bodyTimeoutMillis): the
          // balancer's deadline would cut a body that streams for longer than it.
          { exclude: tried, key, isFailure: isFailureStatus, signal: clientGone.signal, timeoutMillis: 0 },
        );
        return;
      } catch (error) {
        if (res.headersSent || clientGone.signal.aborted) {
          res.destroy();
          return;
        }
        // A retry that finds no instance left answers for the connection failure that caused it.
        const cause = attempt > 1 && error instanceof NoInstanceAvailableError ? lastError : error;
        const another = tried.size < balancer.instances().length;
        if (cause === error && retryable && attempt < o.maxAttempts && another && isConnectionError(error)) {
          lastError = error;
          continue;
        }
        const status = cause instanceof NoInstanceAvailableError ? 503 : isTimeout(cause) ? 504 : 502;
        const message = redactText(cause instanceof Error ? cause.message : String(cause), addresses());
        if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${status} ${message}\n`);
        return;
      }
    }
  };

  return createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
}

/** A listening proxy. */
export interface RunningProxy {
  readonly server: Server;
  /** `http://host:port` it listens on. */
  readonly url: string;
  close(): Promise<void>;
}

/** Creates the proxy and listens on `host:port` (port 0 picks a free one). */
export async function listenProxy(options: ProxyOptions & { readonly host?: string; readonly port?: number }): Promise<RunningProxy> {
  const { host: _host, port: _port, ...proxyOptions } = options;
  const server = createProxyServer(proxyOptions);
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
