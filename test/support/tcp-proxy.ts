/**
 * A loopback TCP proxy in front of a real server, for tests of slow links and lost paths: every
 * chunk waits `delayMillis` in each direction (in order), so a round trip costs twice that. A
 * stalled direction passes nothing and stops reading (so the sender's socket buffers fill, as on a
 * link that stopped); what it held passes, in order, once it flows again. A connection whose
 * client goes while its bytes are held keeps its server side open until then, as a dropped path
 * does (nothing tells the server).
 */
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** One-way delay added to every chunk, each direction; change it at any time. */
  delayMillis: number;
  /**
   * While true, no byte passes either way on any connection, open or new (new ones are accepted and
   * get no answer): a frozen host, a cut link. Set it false to let the held bytes through.
   */
  stalled: boolean;
  /** Sets {@link stalled} once a client's bytes contain `marker`, before they pass (a statement's text); resolves then. */
  stallOn(marker: string): Promise<void>;
  /**
   * The connections open now stop passing (and reading) the server's bytes; their client's bytes
   * still pass, but not their going away, and later connections pass both ways: the return path of
   * those connections dropped, for good.
   */
  stallReplies(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const state = { delayMillis: 0, stalled: false, closed: false, marker: undefined as { text: Buffer; reached: () => void } | undefined };
  const replyStalls: (() => void)[] = [];
  // Held chunks wait here for their direction to flow again; each re-checks when woken.
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const waiter of [...waiters]) waiter();
  };
  const flowing = (stalled: () => boolean): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (state.closed || !stalled()) {
          waiters.delete(check);
          resolve();
        }
      };
      waiters.add(check);
      check();
    });
  const server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    let repliesStalled = false;
    replyStalls.push(() => (repliesStalled = true));
    // While a direction is stalled, neither side's going away is passed on: nothing tells the other side.
    const lost = (): boolean => state.stalled || repliesStalled;
    const pipe = (from: Socket, to: Socket, stalled: () => boolean, fromClient: boolean): void => {
      let chain = Promise.resolve();
      from.on('data', (chunk: Buffer) => {
        const marker = state.marker;
        if (fromClient && marker !== undefined && chunk.includes(marker.text)) {
          state.marker = undefined;
          state.stalled = true;
          marker.reached();
        }
        if (stalled()) from.pause(); // read no more: the sender's buffers fill
        const delay = state.delayMillis;
        chain = chain.then(async () => {
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          await flowing(stalled);
          if (!to.destroyed) to.write(chunk);
          if (from.isPaused() && !from.destroyed && !stalled()) from.resume();
        });
      });
      from.on('end', () => void chain.then(() => flowing(lost)).then(() => to.end()));
      from.on('error', () => void flowing(lost).then(() => to.destroy()));
      from.on('close', () => void chain.then(() => flowing(lost)).then(() => to.destroy()));
    };
    pipe(client, upstream, () => state.stalled, true);
    pipe(upstream, client, () => state.stalled || repliesStalled, false);
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
    get stalled() {
      return state.stalled;
    },
    set stalled(stalled: boolean) {
      state.stalled = stalled;
      if (!stalled) wake();
    },
    stallOn: (marker) => new Promise<void>((resolve) => (state.marker = { text: Buffer.from(marker), reached: resolve })),
    stallReplies: () => {
      for (const stall of replyStalls.splice(0)) stall();
    },
    close: async () => {
      state.closed = true;
      wake();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
