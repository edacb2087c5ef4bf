import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where a Docker engine may listen. */
export type DockerEndpoint =
  | { readonly kind: 'socket'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly tls: boolean };

/** The endpoints Testcontainers would also try: DOCKER_HOST first, then the usual sockets. */
export function dockerEndpoints(env: NodeJS.ProcessEnv = process.env): DockerEndpoint[] {
  const endpoints: DockerEndpoint[] = [];
  const dockerHost = env['DOCKER_HOST'];
  if (dockerHost !== undefined && dockerHost !== '') {
    if (dockerHost.startsWith('unix://')) endpoints.push({ kind: 'socket', path: dockerHost.slice('unix://'.length) });
    else if (dockerHost.startsWith('tcp://')) {
      const url = new URL(dockerHost.replace(/^tcp:/, 'http:'));
      const tls = env['DOCKER_TLS_VERIFY'] !== undefined && env['DOCKER_TLS_VERIFY'] !== '' && env['DOCKER_TLS_VERIFY'] !== '0';
      endpoints.push({ kind: 'tcp', host: url.hostname, port: Number(url.port || (tls ? 2376 : 2375)), tls });
    }
  }
  endpoints.push({ kind: 'socket', path: '/var/run/docker.sock' });
  if (env['XDG_RUNTIME_DIR'] !== undefined) endpoints.push({ kind: 'socket', path: join(env['XDG_RUNTIME_DIR'], 'docker.sock') });
  endpoints.push({ kind: 'socket', path: join(homedir(), '.docker', 'run', 'docker.sock') });
  return endpoints;
}

export function describeEndpoint(endpoint: DockerEndpoint): string {
  return endpoint.kind === 'socket' ? `unix://${endpoint.path}` : `tcp://${endpoint.host}:${endpoint.port}`;
}

function ping(endpoint: DockerEndpoint, timeoutMillis: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (endpoint.kind === 'tcp' && endpoint.tls) {
      // Without the client certificate we cannot speak to it; a TCP answer is as far as we can check.
      const socket = connect({ host: endpoint.host, port: endpoint.port, timeout: timeoutMillis });
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('timeout', () => (socket.destroy(), resolve(false)));
      socket.once('error', () => resolve(false));
      return;
    }
    const target = endpoint.kind === 'socket' ? { socketPath: endpoint.path } : { host: endpoint.host, port: endpoint.port };
    const req = httpRequest({ ...target, path: '/_ping', method: 'GET', timeout: timeoutMillis }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => (req.destroy(), resolve(false)));
    req.once('error', () => resolve(false));
    req.end();
  });
}

/**
 * Asks every candidate endpoint for `/_ping` in parallel and returns the first that answers
 * within `timeoutMillis`, or undefined. Does not load Testcontainers (it is heavy and only
 * needed when an engine answers).
 */
export async function probeDocker(timeoutMillis: number, env: NodeJS.ProcessEnv = process.env): Promise<DockerEndpoint | undefined> {
  const endpoints = dockerEndpoints(env);
  const answers = await Promise.all(endpoints.map((endpoint) => ping(endpoint, timeoutMillis)));
  return endpoints.find((_, i) => answers[i] === true);
}
