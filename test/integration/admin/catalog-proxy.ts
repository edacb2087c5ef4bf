/**
 * A loopback TCP proxy in front of the catalog's real PostgreSQL, for fault injection:
 * - `holdRequestsOn(text)`: the first client→server chunk containing `text`, and every later one on
 *   that connection, is held (a path that stops delivering; the server never sees the statement)
 *   until `release()`;
 * - `holdRepliesOn(text)`: that chunk goes through, and every server→client chunk of that
 *   connection from then on is held (the statement runs; its answer is lost) until `release()`;
 * - `refuseStartupParameters`: the login is checked as PgBouncer 1.18 checks it: a startup packet
 *   with a parameter it does not track is refused with `08P01 unsupported startup parameter: …`.
 * `startups` records every startup packet's parameters.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** Startup parameters PgBouncer 1.18 accepts without `ignore_startup_parameters`. */
export const PGBOUNCER_STARTUP_PARAMETERS: ReadonlySet<string> = new Set(['user', 'database', 'application_name', 'client_encoding', 'datestyle', 'timezone', 'standard_conforming_strings']);

export interface CatalogProxy {
  readonly port: number;
  /** Parameters of each startup packet seen, in order. */
  readonly startups: Record<string, string>[];
  /** Refuse logins carrying a parameter outside {@link PGBOUNCER_STARTUP_PARAMETERS}. */
  refuseStartupParameters: boolean;
  holdRequestsOn(text: string): void;
  holdRepliesOn(text: string): void;
  /** Connections that tripped a hold so far. */
  readonly tripped: number;
  /** Ends every hold; resolves once the held bytes were written on, or dropped because their destination had closed: `delivered` says which. */
  release(): Promise<{ delivered: boolean }>;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;

function errorResponse(code: string, message: string): Buffer {
  const fields = Buffer.concat([...[`SFATAL`, `VFATAL`, `C${code}`, `M${message}`].map((f) => Buffer.from(`${f}\0`)), Buffer.from([0])]);
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

function startupParameters(packet: Buffer): Record<string, string> {
  const parts = packet.subarray(8).toString('utf8').split('\0');
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) out[parts[i]!] = parts[i + 1]!;
  return out;
}

export async function startCatalogProxy(targetPort: number): Promise<CatalogProxy> {
  const sockets = new Set<Socket>();
  const waiting: (() => void)[] = [];
  const heldWrites: Promise<boolean>[] = [];
  const startups: Record<string, string>[] = [];
  const state = { requestsOn: undefined as string | undefined, repliesOn: undefined as string | undefined, released: false, tripped: 0, refuse: false };
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    const held = { up: false, down: false };
    const pipe = (from: Socket, to: Socket, up: boolean): ((chunk: Buffer) => void) => {
      let chain = Promise.resolve();
      const forward = (chunk: Buffer): void => {
        const text = chunk.toString('latin1');
        if (up && state.requestsOn !== undefined && text.includes(state.requestsOn)) {
          state.requestsOn = undefined;
          state.tripped++;
          held.up = true;
        }
        if (up && state.repliesOn !== undefined && text.includes(state.repliesOn)) {
          state.repliesOn = undefined;
          state.tripped++;
          held.down = true;
        }
        const hold = up ? held.up : held.down;
        chain = chain.then(async () => {
          if (hold && !state.released) {
            const written = new Promise<boolean>((resolve) =>
              waiting.push(() => {
                resolve(!to.destroyed);
              }),
            );
            heldWrites.push(written);
            await written;
          }
          if (!to.destroyed) to.write(chunk);
        });
      };
      from.on('end', () => void chain.then(() => to.end()));
      from.on('close', () => void chain.then(() => to.destroy()));
      return forward;
    };
    const toServer = pipe(client, upstream, true);
    const toClient = pipe(upstream, client, false);
    upstream.on('data', toClient);
    // The login first, checked before anything reaches the server.
    let pending = Buffer.alloc(0);
    let loggedIn = false;
    client.on('data', (chunk: Buffer) => {
      if (loggedIn) return toServer(chunk);
      pending = Buffer.concat([pending, chunk]);
      while (!loggedIn && pending.length >= 8) {
        const length = pending.readInt32BE(0);
        if (pending.length < length) return;
        const packet = pending.subarray(0, length);
        pending = pending.subarray(length);
        const code = packet.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSS_REQUEST) {
          client.write('N');
          continue;
        }
        const parameters = startupParameters(packet);
        startups.push(parameters);
        const refused = Object.keys(parameters).find((name) => !PGBOUNCER_STARTUP_PARAMETERS.has(name.toLowerCase()));
        if (state.refuse && refused !== undefined) {
          client.end(errorResponse('08P01', `unsupported startup parameter: ${refused}`));
          upstream.destroy();
          return;
        }
        loggedIn = true;
        toServer(packet);
        if (pending.length > 0) toServer(pending);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    startups,
    get refuseStartupParameters() {
      return state.refuse;
    },
    set refuseStartupParameters(value: boolean) {
      state.refuse = value;
    },
    holdRequestsOn(text) {
      state.released = false;
      state.requestsOn = text;
    },
    holdRepliesOn(text) {
      state.released = false;
      state.repliesOn = text;
    },
    get tripped() {
      return state.tripped;
    },
    async release() {
      state.released = true;
      for (const wake of waiting.splice(0)) wake();
      const results = await Promise.all(heldWrites.splice(0));
      return { delivered: results.length > 0 && results.every(Boolean) };
    },
    via(url) {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    async close() {
      state.released = true;
      for (const wake of waiting.splice(0)) wake();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
