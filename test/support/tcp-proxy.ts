/**
 * A loopback TCP proxy in front of a real server, for tests of slow links: every chunk waits
 * `delayMillis` in each direction (in order), so a round trip costs twice that.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** One-way delay added to every chunk, each direction; change it at any time. */
  delayMillis: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const state = { delayMillis: 0 };
  const server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    const pipe = (from: Socket, to: Socket): void => {
      let chain = Promise.resolve();
      from.on('data', (chunk) => {
        const delay = state.delayMillis;
        chain = chain.then(async () => {
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          if (!to.destroyed) to.write(chunk);
        });
      });
      from.on('end', () => void chain.then(() => to.end()));
      from.on('error', () => to.destroy());
      from.on('close', () => void chain.then(() => to.destroy()));
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    get delayMillis() {
      return state.delayMillis;
    },
    set delayMillis(millis: number) {
      state.delayMillis = millis;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
