import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A real HTTP server on a free loopback port. */
export interface TestServer {
  readonly server: Server;
  readonly url: string;
  /** Stops accepting and cuts every open connection, like a crashed process. */
  kill(): Promise<void>;
}

export async function startServer(handler: RequestListener): Promise<TestServer> {
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let killed: Promise<void> | undefined;
  return {
    server,
    url,
    kill: () => {
      killed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return killed;
    },
  };
}

/** Resolves after `predicate` holds, checking on every emitted event of `emitter`. */
export function waitFor(check: () => boolean, subscribe: (listener: () => void) => () => void): Promise<void> {
  return new Promise((resolve) => {
    if (check()) return resolve();
    const unsubscribe = subscribe(() => {
      if (check()) {
        unsubscribe();
        resolve();
      }
    });
  });
}
