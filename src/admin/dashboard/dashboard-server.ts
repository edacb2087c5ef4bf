/**
 * The dashboard: an HTTP server on 127.0.0.1 by default serving one page that updates live
 * (server-sent events, one snapshot per interval), the JSON API behind it, and uPlot from
 * node_modules (no CDN). A snapshot is the live status of every server ({@link liveStatus}) and
 * the stats instances publish to Redis ({@link publishInstanceStats}). Listening on anything but
 * a loopback address needs a token (`?token=` or `Authorization: Bearer`), compared in constant time.
 * Nothing in a snapshot holds a password: URLs are redacted at the source.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../../kernel/errors';
import { requireInteger } from '../../kernel/validate';
import { dashboardRedis, readInstanceStats, type InstanceStatsSnapshot } from '../../cache/instance-stats';
import { liveStatus, type LiveStatus } from '../live-status';
import { DASHBOARD_PAGE } from './dashboard-page';

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** Catalog database URL. */
  readonly catalog: string;
  /** Redis the instances publish their stats to (cache hit ratios, traffic, balancer). @default none */
  readonly redis?: string;
  /** Address to listen on. Anything but a loopback address needs `token`. @default '127.0.0.1' */
  readonly host?: string;
  /** Port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** Required from every client as `?token=` or `Authorization: Bearer <token>` when given. @default none */
  readonly token?: string;
  /** Time between snapshots, in ms. @default 1000 */
  readonly intervalMillis?: number;
  /** Deadline of each server's check, in ms. @default 1000 */
  readonly timeoutMillis?: number;
}

/** One snapshot: what the page shows and `GET /api/snapshot` answers. */
export interface DashboardSnapshot {
  readonly status: LiveStatus;
  readonly instances: readonly InstanceStatsSnapshot[];
  /** Why the instances' stats could not be read, when Redis did not answer. */
  readonly instancesError: string | null;
}

/** A running dashboard. */
export interface RunningDashboard {
  /** The page's URL (with the token, when one is required). */
  readonly url: string;
  /** The latest snapshot (after the first one was taken). */
  snapshot(): Promise<DashboardSnapshot>;
  close(): Promise<void>;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

function assetPath(file: string): string {
  return require.resolve(`uplot/dist/${file}`);
}

/** Starts the dashboard (see the module comment). */
export async function startDashboard(options: DashboardOptions): Promise<RunningDashboard> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token;
  if (token !== undefined && token.length < 8) throw new ConfigError('token', 'must be at least 8 characters');
  if (!LOOPBACK.test(host) && token === undefined) throw new ConfigError('token', `is required to listen on ${host}, which is not a loopback address`);
  const intervalMillis = requireInteger('intervalMillis', options.intervalMillis ?? 1000, 100);
  const timeoutMillis = requireInteger('timeoutMillis', options.timeoutMillis ?? 1000, 100);
  const redis = options.redis === undefined ? undefined : dashboardRedis(options.redis);
  const assets = {
    '/uplot.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(assetPath('uPlot.iife.min.js')) },
    '/uplot.css': { type: 'text/css; charset=utf-8', body: readFileSync(assetPath('uPlot.min.css')) },
  } as const;

  const take = async (): Promise<DashboardSnapshot> => {
    const [status, instances] = await Promise.all([
      liveStatus(options.catalog, { timeoutMillis, migrations: false }),
      redis === undefined
        ? Promise.resolve({ list: [] as InstanceStatsSnapshot[], error: null })
        : readInstanceStats(redis.client).then(
            (list) => ({ list, error: null }),
            (error: unknown) => ({ list: [] as InstanceStatsSnapshot[], error: error instanceof Error ? error.message : String(error) }),
          ),
    ]);
    return { status, instances: instances.list, instancesError: instances.error };
  };
  let latest: Promise<DashboardSnapshot> = (async () => {
    await redis?.connecting;
    return take();
  })();
  const listeners = new Set<(snapshot: DashboardSnapshot) => void>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    timer = setTimeout(async () => {
      const next = take();
      latest = next;
      const snapshot = await next;
      for (const listener of listeners) listener(snapshot);
      if (!closed) tick();
    }, intervalMillis);
  };
  void latest.then((s) => {
    for (const listener of listeners) listener(s);
  });
  tick();

  const authorized = (req: IncomingMessage, url: URL): boolean => {
    if (token === undefined) return true;
    const given = url.searchParams.get('token') ?? /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (!authorized(req, url)) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' }).end('401 a token is required: open the URL the dashboard printed\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const common = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (url.pathname === '/') {
      res.writeHead(200, { ...common, 'content-type': 'text/html; charset=utf-8', 'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'" }).end(DASHBOARD_PAGE);
      return;
    }
    const asset = assets[url.pathname as keyof typeof assets];
    if (asset !== undefined) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'max-age=3600' }).end(asset.body);
      return;
    }
    if (url.pathname === '/api/snapshot') {
      latest.then(
        (snapshot) => res.writeHead(200, { ...common, 'content-type': 'application/json' }).end(JSON.stringify(snapshot)),
        () => res.writeHead(500).end(),
      );
      return;
    }
    if (url.pathname === '/api/events') {
      res.writeHead(200, { ...common, 'content-type': 'text/event-stream', connection: 'keep-alive' });
      const send = (snapshot: DashboardSnapshot): void => void res.write(`data: ${JSON.stringify(snapshot)}\n\n`);
      listeners.add(send);
      void latest.then(send, () => undefined);
      req.on('close', () => listeners.delete(send));
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404\n');
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/${token === undefined ? '' : `?token=${encodeURIComponent(token)}`}`,
    snapshot: () => latest,
    async close() {
      closed = true;
      clearTimeout(timer);
      listeners.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await redis?.close();
    },
  };
}
