import { spawn } from 'node:child_process';
import { createServer, type RequestListener, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

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

/** A loopback address where connecting hangs: nothing is ever sent to it, like a blackholed host. */
export interface Blackhole {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * A child process listens with a backlog of 1 and never accepts (its event loop is blocked), and
 * the queue is filled with connections of our own, so the kernel drops further SYNs: a connect to
 * `url` stays pending (until the client's own connect timeout).
 */
export async function startBlackhole(): Promise<Blackhole> {
  const script = `
    const server = require('node:net').createServer();
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(server.address().port + '\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0));
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`blackhole process exited with ${String(code)}`)));
  });
  // Fill the accept queue (Linux keeps backlog + 1 = 2 completed connections), then add a few
  // more whose SYNs are dropped: from then on a connect to the port stays pending.
  const fillers: Socket[] = [];
  const connected: Array<Promise<void>> = [];
  for (let i = 0; i < 4; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    fillers.push(socket);
    if (i < 2) connected.push(new Promise<void>((resolve) => socket.once('connect', () => resolve())));
  }
  await Promise.all(connected);
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      for (const s of fillers) s.destroy();
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
