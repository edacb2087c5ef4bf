/**
 * A loopback TCP proxy in front of the catalog, for a publish whose outcome cannot be learnt while
 * the catalog stays readable (as behind a pooler, or when the catalog has no connection slot left
 * for a fresh session): once armed, the client→server bytes of the connection that sends `marker`
 * (the publish) are held, and so is its client's going away; logins whose startup packet names
 * `refusedApplication` (the publish's outcome check) are refused by closing them. Every other
 * connection passes as it is. `release(true)` delivers the held bytes to their server process (the
 * publish runs then); `release(false)` closes that server connection instead (it never runs).
 */
import { connect, createServer, type Socket } from 'node:net';

export interface HeldPublishProxy {
  readonly port: number;
  /** Holds the next connection whose bytes contain `marker`; refuses logins naming `refusedApplication` from now on. */
  arm(marker: string, refusedApplication: string): void;
  /** Whether a connection's bytes are held now. */
  readonly holding: boolean;
  /** Logins refused so far. */
  readonly refused: number;
  release(deliver: boolean): Promise<void>;
  via(url: string): string;
  close(): Promise<void>;
}

export async function startHeldPublishProxy(targetPort: number): Promise<HeldPublishProxy> {
  const sockets = new Set<Socket>();
  const state = { marker: undefined as Buffer | undefined, refuse: undefined as Buffer | undefined, refused: 0 };
  let held: { server: Socket; client: Socket; chunks: Buffer[] } | undefined;
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    let first = true;
    let mine = false;
    client.on('data', (chunk: Buffer) => {
      if (first && state.refuse !== undefined && chunk.includes(state.refuse)) {
        state.refused++;
        client.destroy();
        upstream.destroy();
        return;
      }
      first = false;
      if (mine) {
        held!.chunks.push(chunk);
        return;
      }
      if (held === undefined && state.marker !== undefined && chunk.includes(state.marker)) {
        state.marker = undefined;
        mine = true;
        held = { server: upstream, client, chunks: [chunk] };
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    // A held connection's server side stays open when its client goes (nothing tells the server).
    client.on('close', () => {
      if (!mine) upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    arm(marker, refusedApplication) {
      state.marker = Buffer.from(marker);
      state.refuse = Buffer.from(refusedApplication);
    },
    get holding() {
      return held !== undefined;
    },
    get refused() {
      return state.refused;
    },
    async release(deliver) {
      state.refuse = undefined;
      const h = held;
      held = undefined;
      if (h === undefined) return;
      if (deliver) {
        for (const chunk of h.chunks) h.server.write(chunk);
        // The client went long ago: the server's answer has nowhere to go; close once it is written.
        await new Promise<void>((resolve) => h.server.end(resolve));
      } else {
        h.server.destroy();
      }
    },
    via(url) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
