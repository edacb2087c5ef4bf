/**
 * A loopback TCP proxy in front of a real server, for tests of slow links and lost paths: every
 * chunk waits `delayMillis` in each direction (in order), so a round trip costs twice that. A
 * stalled direction passes nothing and stops reading (so the sender's socket buffers fill, as on a
 * link that stopped); what it held passes, in order, once it flows again. A connection whose
 * client goes while its bytes are held keeps its server side open until then, as a dropped path
 * does (nothing tells the server). One-shot rules act on the first client chunk that contains a
 * marker (a statement's text or a parameter's), in the order they were set: reset its connection
 * before or just after the chunk passes, or hold the chunk until the test releases or resets it.
 * A failover resets every connection open at that moment when its client next sends. `clear()`
 * (after each test) drops what a test left armed.
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
  /**
   * Resets the connection whose client's next chunk contains `marker`: the client gets a TCP reset
   * (ECONNRESET), and the server either never sees the chunk (`after: false`) or gets it followed by
   * the end of its connection (`after: true`: it runs what the chunk asks, and its answer goes
   * nowhere). Resolves then.
   */
  resetOn(marker: string, options?: { readonly after?: boolean }): Promise<void>;
  /**
   * A failover behind the server's address: every connection open now is reset (the client gets
   * ECONNRESET, the server's side is closed) when its client next sends a byte, as the new host,
   * which knows no such connection, answers it; until then nothing tells either side. New
   * connections pass as before.
   */
  failover(): void;
  /** Holds the client chunk that next contains `marker` (and what its connection sends after it) in the proxy. */
  holdOn(marker: string): HeldChunk;
  /**
   * While true, new connections are accepted and closed at once (the client sees its connection
   * end before the server's first byte), as a proxy or virtual IP with nothing behind it does.
   */
  closingNew: boolean;
  /**
   * Drops what a test left armed: one-shot rules that never fired ({@link resetOn}, {@link holdOn},
   * {@link stallOn}), chunks still held (their connections reset), {@link stalled} and
   * {@link closingNew}. Returns how many armed rules it dropped.
   */
  clear(): number;
  /** How many client connections the proxy accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** A chunk held by {@link TcpProxy.holdOn}. */
export interface HeldChunk {
  /** Resolves once a chunk with the marker is held. */
  readonly reached: Promise<void>;
  /** Lets it (and its connection) through. */
  release(): void;
  /** Resets its connection instead, as {@link TcpProxy.resetOn} before the chunk passes. */
  reset(): void;
}

type Rule =
  | { readonly act: 'reset'; readonly text: Buffer; readonly after: boolean; readonly reached: () => void }
  | { readonly act: 'hold'; readonly text: Buffer; readonly reached: () => void; readonly decided: Promise<'release' | 'reset'> };

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const state = { delayMillis: 0, stalled: false, closingNew: false, closed: false, marker: undefined as { text: Buffer; reached: () => void } | undefined };
  const replyStalls: (() => void)[] = [];
  // Marks each open connection as failed over (see TcpProxy.failover).
  const failovers = new Set<() => void>();
  const rules: Rule[] = [];
  // Held chunks not decided yet (see clear()).
  const undecided = new Set<(decision: 'release' | 'reset') => void>();
  let accepted = 0;
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
    accepted++;
    if (state.closingNew) {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      client.on('error', () => undefined);
      client.end();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    let repliesStalled = false;
    replyStalls.push(() => (repliesStalled = true));
    let failedOver = false;
    const failOver = (): void => {
      failedOver = true;
    };
    failovers.add(failOver);
    client.on('close', () => failovers.delete(failOver));
    // While a direction is stalled, neither side's going away is passed on: nothing tells the other side.
    const lost = (): boolean => state.stalled || repliesStalled;
    // A client reset by a rule: its going away is not passed on (an `after` reset lets the server end its side when done).
    let cut = false;
    const reset = (serverToo: boolean): void => {
      cut = true;
      client.resetAndDestroy();
      if (serverToo) upstream.destroy();
    };
    /** Applies the first rule whose marker `chunk` holds: the chunk's place in its connection's chain, or undefined when no rule took it. */
    const ruled = (chunk: Buffer, chain: Promise<void>): Promise<void> | undefined => {
      const at = rules.findIndex((r) => chunk.includes(r.text));
      const rule = rules[at];
      if (rule === undefined) return undefined;
      rules.splice(at, 1);
      rule.reached();
      if (rule.act === 'reset' && !rule.after) {
        reset(true);
        return chain;
      }
      if (rule.act === 'reset') {
        return chain.then(() => {
          upstream.end(chunk);
          reset(false);
        });
      }
      const decided = rule.decided;
      client.pause(); // what the client sends next waits behind the held chunk
      return chain
        .then(() => decided)
        .then((decision) => {
          if (decision === 'reset') reset(true);
          else {
            if (!upstream.destroyed) upstream.write(chunk);
            client.resume();
          }
        });
    };
    const pipe = (from: Socket, to: Socket, stalled: () => boolean, fromClient: boolean): void => {
      let chain = Promise.resolve();
      from.on('data', (chunk: Buffer) => {
        if (cut) return;
        if (fromClient && failedOver) {
          reset(true);
          return;
        }
        const taken = fromClient ? ruled(chunk, chain) : undefined;
        if (taken !== undefined) {
          chain = taken;
          return;
        }
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
      from.on('end', () => void chain.then(() => flowing(lost)).then(() => (fromClient && cut ? undefined : to.end())));
      from.on('error', () => void flowing(lost).then(() => (fromClient && cut ? undefined : to.destroy())));
      from.on('close', () => void chain.then(() => flowing(lost)).then(() => (fromClient && cut ? undefined : to.destroy())));
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
    resetOn: (marker, options) =>
      new Promise<void>((resolve) => rules.push({ act: 'reset', text: Buffer.from(marker), after: options?.after === true, reached: resolve })),
    failover: () => {
      for (const failOver of failovers) failOver();
      failovers.clear();
    },
    holdOn: (marker) => {
      let reached: () => void = () => undefined;
      let decide: (decision: 'release' | 'reset') => void = () => undefined;
      const held = new Promise<void>((resolve) => (reached = resolve));
      rules.push({ act: 'hold', text: Buffer.from(marker), reached, decided: new Promise((resolve) => (decide = resolve)) });
      const decideOnce = (decision: 'release' | 'reset'): void => {
        undecided.delete(decideOnce);
        decide(decision);
      };
      undecided.add(decideOnce);
      return { reached: held, release: () => decideOnce('release'), reset: () => decideOnce('reset') };
    },
    get closingNew() {
      return state.closingNew;
    },
    set closingNew(closing: boolean) {
      state.closingNew = closing;
    },
    clear: () => {
      const armed = rules.splice(0).length + (state.marker === undefined ? 0 : 1);
      state.marker = undefined;
      for (const decide of [...undecided]) decide('reset');
      state.closingNew = false;
      state.stalled = false;
      wake();
      return armed;
    },
    get accepted() {
      return accepted;
    },
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
