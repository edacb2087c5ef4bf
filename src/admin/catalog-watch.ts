/**
 * A watch of the catalog: LISTEN on its channel and deliver every newer version, in order, none
 * twice. A host that silently drops packets (or a frozen one) never closes the LISTEN connection
 * and sends no error, so the watch proves its connection alive with a heartbeat (`select 1` every
 * `heartbeatIntervalMillis`, under the statement deadline); a connection that fails it, or is
 * lost, is dropped and reconnected after a wait that doubles with each failed attempt (up to
 * `maxReconnectDelayMillis`, randomly shortened by up to half so a fleet of instances does not
 * reconnect in step), each failure reported to `onError`. Every reconnect reloads what was
 * published meanwhile, so a missed notification is never a missed version.
 */
import { Client } from 'pg';
import { mathRandom, type Cancel, type Clock, type RandomSource } from '../kernel/clock';
import { withDeadline } from '../kernel/deadline';
import { redactUrl } from '../kernel/redact';
import type { Topology } from '../cluster/topology';
import { connectCatalogClient, sessionConfig, timedQuery, type CatalogDeadlines } from './catalog-connections';
import { destroySocket } from './server-client';

/** A running watch; `close()` stops it. */
export interface TopologyWatch {
  close(): Promise<void>;
}

/** What a watch needs of its catalog. */
export interface WatchSettings {
  readonly url: string;
  /** The NOTIFY channel. */
  readonly channel: string;
  readonly applicationName: string;
  readonly deadlines: Required<CatalogDeadlines>;
  readonly heartbeatIntervalMillis: number;
  readonly reconnectDelayMillis: number;
  readonly maxReconnectDelayMillis: number;
  /** Schedules the heartbeats and the reconnect waits (deadlines run on real time). */
  readonly clock: Clock;
  /** Shortens each reconnect wait (see {@link reconnectDelay}). */
  readonly random: RandomSource;
  /** Published topologies newer than `version`, oldest first. */
  readonly newerThan: (version: number) => Promise<Topology[]>;
}

/**
 * The wait before a reconnect attempt after `failures` failed ones (0 right after a lost
 * connection): `baseMillis` doubled per failure, at most `maxMillis`, times a random factor in
 * [0.5, 1].
 */
export function reconnectDelay(failures: number, baseMillis: number, maxMillis: number, random: RandomSource = mathRandom): number {
  const ceiling = Math.min(maxMillis, baseMillis * 2 ** Math.min(failures, 30));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** Starts a watch (see the module comment); fails, leaving nothing open, when its first connection or load fails. */
export async function startWatch(settings: WatchSettings, listener: (topology: Topology) => void, onError: (error: Error) => void): Promise<TopologyWatch> {
  const { deadlines } = settings;
  const catalog = redactUrl(settings.url);
  const { clock } = settings;
  let seen = 0;
  let closed = false;
  let current: Client | undefined;
  // Connections that were established (listening, caught up): only their loss is reported here.
  const live = new WeakSet<Client>();
  let retry: Cancel | undefined;
  let beat: Cancel | undefined;
  let failures = 0;
  // A delivery failed (the catalog did not answer the reload a notification asked for): the next heartbeat retries it.
  let behind = false;
  let queue: Promise<void> = Promise.resolve();
  const report = (error: unknown): void => {
    try {
      onError(error as Error);
    } catch {
      // A reporter that throws must not stop the watch.
    }
  };
  // Deliveries run one after another, so versions arrive in order even when notifications overlap.
  const deliverNewer = (): Promise<void> => {
    const step = queue.then(async () => {
      if (closed) return;
      for (const topology of await settings.newerThan(seen)) {
        if (closed) return;
        seen = topology.version;
        try {
          listener(topology);
        } catch (error) {
          report(error);
        }
      }
    });
    queue = step.catch(() => undefined);
    return step;
  };
  const deliverOrReport = (): void => {
    deliverNewer().then(
      () => (behind = false),
      (error: unknown) => {
        behind = true;
        report(error);
      },
    );
  };
  const drop = (client: Client): void => {
    client.removeAllListeners();
    client.on('error', () => undefined);
    destroySocket(client);
  };
  const lost = (client: Client, error: Error): void => {
    if (client !== current || !live.has(client) || closed) return;
    current = undefined;
    beat?.();
    report(error);
    drop(client);
    scheduleReconnect();
  };
  const heartbeat = (client: Client): void => {
    beat = clock.setTimeout(() => {
      if (client !== current || closed) return;
      timedQuery(client, 'select 1', undefined, catalog, deadlines.statementTimeoutMillis, (late) => lost(client, late)).then(
        () => {
          if (client !== current || closed) return;
          if (behind) deliverOrReport();
          heartbeat(client);
        },
        (error: unknown) => lost(client, error as Error),
      );
    }, settings.heartbeatIntervalMillis);
  };
  const connect = async (): Promise<void> => {
    const next = new Client(sessionConfig(settings.url, deadlines, settings.applicationName));
    current = next;
    next.on('error', (error) => lost(next, error));
    next.on('end', () => lost(next, new Error(`the connection to the catalog ${catalog} ended`)));
    next.on('notification', deliverOrReport);
    try {
      await connectCatalogClient(next, settings.url, deadlines);
      await timedQuery(next, `listen "${settings.channel}"`, undefined, catalog, deadlines.statementTimeoutMillis);
      await deliverNewer(); // versions published while we were not listening
    } catch (error) {
      if (current === next) current = undefined;
      drop(next);
      throw error;
    }
    if (closed) {
      // close() ran while this connection was being made.
      if (current === next) current = undefined;
      drop(next);
      return;
    }
    live.add(next);
    failures = 0;
    behind = false;
    heartbeat(next);
  };
  const scheduleReconnect = (): void => {
    if (closed || retry !== undefined) return;
    retry = clock.setTimeout(
      () => {
        retry = undefined;
        connect().catch((error: unknown) => {
          if (closed) return;
          report(error);
          scheduleReconnect();
        });
      },
      reconnectDelay(failures++, settings.reconnectDelayMillis, settings.maxReconnectDelayMillis, settings.random),
    );
  };

  await connect();
  return {
    close: async () => {
      closed = true;
      retry?.();
      retry = undefined;
      beat?.();
      const last = current;
      current = undefined;
      if (last !== undefined) {
        last.removeAllListeners();
        last.on('error', () => undefined);
        // A goodbye, unless the catalog does not take it in time (a frozen host never acknowledges one).
        void withDeadline(last.end(), deadlines.connectionTimeoutMillis, 'closing the catalog watch', { onLate: () => destroySocket(last) }).catch(() => undefined);
      }
      await queue;
    },
  };
}
