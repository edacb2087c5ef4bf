/**
 * A small HTTP reverse proxy over a balancer: streams request and response bodies, passes status
 * codes and headers through (minus hop-by-hop ones), appends `X-Forwarded-For`, retries idempotent
 * body-less requests on another instance when the connection fails, and serves its statistics.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Agent, type Dispatcher } from 'undici';
import type { Balancer } from './balancer';
import { NoInstanceAvailableError, RequestTimeoutError } from './balancer-errors';
import { requireInteger, requirePositive } from './balancer-validate';
import { isConnectionError, isIdempotent } from './http-retry';
import { formatPrometheus, PROMETHEUS_CONTENT_TYPE } from './prometheus-exposition';

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
   * Path answering the statistics as JSON; `null` serves none.
   * @default '/__balancer/stats'
   */
  readonly statsPath?: string | null;
  /**
   * Path answering Prometheus metrics; `null` serves none.
   * @default '/__balancer/metrics'
   */
  readonly metricsPath?: string | null;
  /**
   * Longest wait for an upstream's response headers, in ms (answered 504 after it).
   * @default 30000
   */
  readonly headersTimeoutMillis?: number;
  /**
   * Longest silence while streaming an upstream's body, in ms.
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

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus those undici sets itself. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
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
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** Headers sent upstream: end-to-end ones plus `X-Forwarded-For/-Host/-Proto`. */
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
  const o = { ...PROXY_DEFAULTS, ...options };
  requireInteger('maxAttempts', o.maxAttempts, 1);
  requirePositive('headersTimeoutMillis', o.headersTimeoutMillis);
  requirePositive('bodyTimeoutMillis', o.bodyTimeoutMillis);
  const { balancer } = options;
  const isFailureStatus = options.isFailureStatus ?? ((status: number) => status >= 500);
  const dispatcher =
    options.dispatcher ?? new Agent({ headersTimeout: o.headersTimeoutMillis, bodyTimeout: o.bodyTimeoutMillis });
  const affinityHeader = o.affinityHeader.toLowerCase();

  const serveStats = (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = (req.url ?? '/').split('?')[0];
    if (o.statsPath !== null && path === o.statsPath) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(balancer.stats()));
      return true;
    }
    if (o.metricsPath !== null && path === o.metricsPath) {
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(formatPrometheus(balancer.stats()));
      return true;
    }
    return false;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (serveStats(req, res)) return;
    const method = req.method ?? 'GET';
    const withBody = hasBody(req);
    const retryable = isIdempotent(method) && !withBody;
    const headers = forwardedHeaders(req);
    const affinity = req.headers[affinityHeader];
    const key = typeof affinity === 'string' ? affinity : clientAddress(req);
    const clientGone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) clientGone.abort(new Error('client closed the connection'));
    });
    const tried = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      try {
        await balancer.run(
          async (instance, signal) => {
            tried.add(instance.id);
            const upstream = await dispatcher.request({
              origin: instance.address,
              path: req.url ?? '/',
              method: method as Dispatcher.HttpMethod,
              headers,
              body: withBody ? req : null,
              signal,
            });
            res.writeHead(upstream.statusCode, endToEnd(upstream.headers));
            await pipeline(upstream.body, res);
            return upstream.statusCode;
          },
          { exclude: tried, key, isFailure: isFailureStatus, signal: clientGone.signal },
        );
        return;
      } catch (error) {
        if (res.headersSent) {
          res.destroy(error instanceof Error ? error : undefined);
          return;
        }
        const another = tried.size < balancer.instances().length;
        if (retryable && attempt < o.maxAttempts && another && isConnectionError(error)) continue;
        const status = error instanceof NoInstanceAvailableError ? 503 : isTimeout(error) ? 504 : 502;
        const message = error instanceof Error ? error.message : String(error);
        if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${status} ${message}\n`);
        return;
      }
    }
  };

  return createServer((req, res) => {
    handle(req, res).catch((error: unknown) => res.destroy(error instanceof Error ? error : undefined));
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
  const server = createProxyServer(options);
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
