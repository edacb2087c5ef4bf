/**
 * The proxy's admin endpoint: list, add and remove upstreams and reload the config while it runs.
 * It has no authentication of its own, so it only ever listens on a loopback address and only
 * answers loopback clients.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, KyselyScaleError } from '../../kernel/errors';
import { describeValue } from '../../kernel/validate';
import { redactAddress, redactText } from '../../kernel/redact';
import type { Balancer } from '../balancer';
import { checkUpstream } from './proxy-config-check';
import type { RunningProxy } from './proxy';
import type { UpstreamChanges } from './proxy-upstreams';
import { isLoopback } from './proxy-loopback';

/** Options of {@link listenProxyAdmin}. */
export interface ProxyAdminOptions {
  readonly balancer: Balancer;
  /** A loopback address (`127.0.0.1`, `::1`, `localhost`); anything else is refused. */
  readonly host: string;
  /** Port; 0 picks a free one. */
  readonly port: number;
  /** Re-reads the config and applies its upstreams (`POST /reload`); absent: 404. */
  readonly reload?: () => Promise<UpstreamChanges>;
}

const MAX_BODY_BYTES = 64 * 1024;

async function readJson(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new ConfigError('body', `must be at most ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new ConfigError('body', 'must be JSON: an upstream URL as a string, or { "id", "address", "weight" }');
  }
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  const text = body === undefined ? '' : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** @internal Starts the admin endpoint on a loopback address (the proxy does, from `admin` in its config). */
export async function listenProxyAdmin(options: ProxyAdminOptions): Promise<RunningProxy> {
  const { balancer, reload } = options;
  if (!isLoopback(options.host)) {
    throw new ConfigError('admin', `must be a loopback address (127.0.0.1, ::1 or localhost): the admin endpoint has no authentication; got ${describeValue(options.host)}`);
  }
  const upstreams = () =>
    balancer.stats().instances.map((i) => ({ id: i.id, address: i.address, weight: i.weight, healthy: i.healthy, ejected: i.ejected, inflight: i.inflight }));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!isLoopback(req.socket.remoteAddress ?? '')) return send(res, 403, { error: 'the admin endpoint answers loopback clients only' });
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    if (path === '/upstreams' && method === 'GET') return send(res, 200, upstreams());
    if (path === '/upstreams' && method === 'POST') {
      const spec = checkUpstream('upstream', await readJson(req));
      if (balancer.instance(spec.id) !== undefined) return send(res, 409, { error: `upstream \`${spec.id}\` exists; DELETE it first` });
      balancer.addInstance(spec);
      return send(res, 201, { id: spec.id, address: redactAddress(spec.address) });
    }
    const one = /^\/upstreams\/(.+)$/.exec(path);
    if (one !== null && method === 'DELETE') {
      const id = decodeURIComponent(one[1] as string);
      return balancer.removeInstance(id) ? send(res, 204) : send(res, 404, { error: `no upstream \`${id}\`` });
    }
    if (path === '/reload' && method === 'POST' && reload !== undefined) return send(res, 200, await reload());
    return send(res, 404, { error: 'GET /upstreams, POST /upstreams, DELETE /upstreams/<id>, POST /reload' });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const known = balancer.instances().map((i) => i.address);
      const message = redactText(error instanceof Error ? error.message : String(error), known);
      if (!res.headersSent) send(res, error instanceof KyselyScaleError ? 400 : 500, { error: message });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
