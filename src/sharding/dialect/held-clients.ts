/**
 * The pg clients one sharded connection holds: at most one per server, checked out on first
 * use and kept until the connection is released, so `db.connection()` keeps its session state on
 * every shard it touched.
 */
import type { CompiledQuery, QueryResult } from 'kysely';
import { types as pgTypes } from 'pg';
import type { PoolClientLike } from '../../cluster/server-pools';
import type { ServerSpec, Topology } from '../../cluster/topology';
import { isConnectionFailure } from '../../cluster/connection-failure';
import { annotateConnectionError, annotateStatementError, identifyServer, isBroken, noteClientServer } from './server-errors';
import type { CursorConstructor } from './sharded-dialect-config';

/** Where held clients come from: the dialect's server pools (a destroyed dialect refuses), and the topology naming their servers. */
export interface ClientSource {
  acquire(server: ServerSpec): Promise<PoolClientLike>;
  readonly topology: Topology;
}

/** A client being held: the pending checkout, and the client once it arrived. */
interface HeldClient {
  readonly url: string;
  readonly pending: Promise<PoolClientLike>;
  client: PoolClientLike | undefined;
}

/** The clients of one connection, per server. */
export class HeldClients {
  readonly #source: ClientSource;
  /**
   * In acquisition order. A list searched by URL rather than a Map: it holds one client for almost
   * every statement, and a Map's clear() on release allocates a new table each time (a scatter over
   * n shards costs n² cheap comparisons).
   */
  readonly #held: HeldClient[] = [];
  /** Set when a held client may be in an unknown state: every client is closed instead of returned to its pool. */
  #discardOnRelease = false;

  constructor(source: ClientSource) {
    this.#source = source;
  }

  /** The client of `server`, checked out on first use; concurrent callers share one checkout. */
  client(server: ServerSpec): Promise<PoolClientLike> {
    const held = this.#heldFor(server.url);
    if (held !== undefined) return held.pending;
    const entry = this.#hold(server);
    // Registered before the caller's handlers, so the caller sees the client noted and the error annotated.
    entry.pending.then(
      (client) => {
        entry.client = client;
        noteClientServer(client, this.#source.topology, server);
      },
      (error: unknown) => {
        annotateConnectionError(error, server, identifyServer(this.#source.topology, server));
        this.#forget(entry);
      },
    );
    return entry.pending;
  }

  /** Runs a statement on `server`'s client. */
  run<R>(server: ServerSpec, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const held = this.#heldFor(server.url);
    if (held !== undefined) {
      return held.client !== undefined ? runCompiled<R>(held.client, compiled) : held.pending.then((client) => runCompiled<R>(client, compiled));
    }
    // The common case, one statement per connection: the checkout's bookkeeping and the statement share one continuation.
    const entry = this.#hold(server);
    return entry.pending.then(
      (client) => {
        entry.client = client;
        noteClientServer(client, this.#source.topology, server);
        return runCompiled<R>(client, compiled);
      },
      (error: unknown) => {
        this.#forget(entry);
        throw annotateConnectionError(error, server, identifyServer(this.#source.topology, server));
      },
    );
  }

  /** The clients that arrived, with their server's URL, in acquisition order. */
  arrived(): { readonly url: string; readonly client: PoolClientLike }[] {
    const out: { url: string; client: PoolClientLike }[] = [];
    for (const entry of this.#held) if (entry.client !== undefined) out.push({ url: entry.url, client: entry.client });
    return out;
  }

  /**
   * Stops holding the arrived clients of the servers `select` picks, and closes them without
   * waiting: a stream of this connection may still read through one, so its pool must not hand it
   * to another connection.
   */
  dropArrived(select: (url: string) => boolean): void {
    const held = this.#held;
    for (let i = held.length - 1; i >= 0; i--) {
      const entry = held[i]!;
      if (entry.client === undefined || !select(entry.url)) continue;
      held.splice(i, 1);
      entry.client.release(true);
    }
  }

  /**
   * Returns every arrived client to its pool and stops holding it (it is checked out anew, and
   * tagged with the version then current, if a later statement needs its server). Only for a
   * connection whose clients carry no session state and are idle.
   */
  giveBackArrived(): void {
    const destroy = this.#discardOnRelease ? true : undefined;
    const held = this.#held;
    for (let i = held.length - 1; i >= 0; i--) {
      const entry = held[i]!;
      if (entry.client === undefined) continue;
      held.splice(i, 1);
      giveBack(entry.client, destroy);
    }
  }

  /** Stops holding the client of `url`, closing it rather than returning it to its pool (it may be broken). */
  drop(url: string): void {
    const entry = this.#heldFor(url);
    if (entry === undefined) return;
    this.#forget(entry);
    if (entry.client !== undefined) entry.client.release(true);
    else entry.pending.then((client) => client.release(true), () => undefined);
  }

  /** Closes every client at release instead of returning it to its pool (one of them is in an unknown state). */
  discardOnRelease(): void {
    this.#discardOnRelease = true;
  }

  /**
   * Returns every client to its pool, or closes them all when `discard` is set (a client left
   * inside an open transaction) or {@link discardOnRelease} was called. Synchronous (returns
   * `undefined`) when every client had arrived, the common case; otherwise a promise that settles
   * once the late ones are back.
   */
  release(discard: boolean): Promise<void> | undefined {
    const destroy = discard || this.#discardOnRelease ? true : undefined;
    this.#discardOnRelease = false;
    const entries = this.#held;
    if (entries.length === 0) return undefined;
    let late: Promise<void>[] | undefined;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.client !== undefined) giveBack(entry.client, destroy);
      else (late ??= []).push(entry.pending.then((client) => giveBack(client, destroy), () => undefined));
    }
    entries.length = 0;
    return late === undefined ? undefined : Promise.all(late).then(() => undefined);
  }

  /**
   * Starts a checkout of `server` and registers it before it resolves, so a concurrent statement
   * for the same server shares it. The caller's first continuation on `pending` must set
   * `client`, or forget the entry when the checkout fails.
   */
  #hold(server: ServerSpec): HeldClient {
    const entry: HeldClient = { url: server.url, pending: this.#source.acquire(server), client: undefined };
    this.#held.push(entry);
    return entry;
  }

  #forget(entry: HeldClient): void {
    const at = this.#held.indexOf(entry);
    if (at >= 0) this.#held.splice(at, 1);
  }

  #heldFor(url: string): HeldClient | undefined {
    const held = this.#held;
    for (let i = 0; i < held.length; i++) if (held[i]!.url === url) return held[i];
    return undefined;
  }
}

/** Returns `client` to its pool, or closes it when told to or when its connection failed under a statement. */
function giveBack(client: PoolClientLike, destroy: true | undefined): void {
  client.release(destroy ?? (isBroken(client) ? true : undefined));
}

/** Runs one statement on `client`; INSERT/UPDATE/DELETE/MERGE report their affected rows as Kysely expects. */
export function runOn<R>(client: PoolClientLike, sql: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
  return client.query(sql, [...parameters]).then(toQueryResult<R>, (error: unknown) => Promise.reject(annotateStatementError(error, client)));
}

/**
 * What a scatter adds to the statement it sends one shard: the name of a prepared statement to run
 * it as (parsed once per pooled connection instead of on every call), and a sink for its row
 * description (before the rows are handed over).
 */
export interface ShardStatementOptions {
  readonly preparedName?: string;
  readonly onRowDescription?: (description: RowDescription) => void;
}

/** A client's pg type parser for text values of a type, by OID. */
export type TypeParsers = (oid: number) => (text: string) => unknown;

/** What a shard's result says of its rows: the type OIDs of its fields in order, and the parsers the client parsed them with. */
export interface RowDescription {
  readonly oids: readonly number[];
  readonly parserOf: TypeParsers;
}

/** The parsers `client` uses (pg's `getTypeParser`, its own overrides over the global ones), else pg's global ones. */
function parsersOf(client: PoolClientLike): TypeParsers {
  const own = (client as { getTypeParser?: (oid: number, format?: string) => (text: string) => unknown }).getTypeParser;
  return typeof own === 'function' ? (oid) => own.call(client, oid, 'text') : globalParsers;
}

/** pg's global parsers: what pg-cursor parses with when given no `types`. */
const globalParsers: TypeParsers = (oid) => pgTypes.getTypeParser(oid, 'text');

/** A compiled statement with {@link ShardStatementOptions}; runs like any other where they do not apply. */
export interface ShardStatement extends CompiledQuery {
  readonly shardOptions: ShardStatementOptions;
}

function shardOptionsOf(compiled: CompiledQuery): ShardStatementOptions | undefined {
  return (compiled as Partial<ShardStatement>).shardOptions;
}

/** Runs `compiled` on `client`, as a prepared statement and reporting its field types when it is a {@link ShardStatement}. */
export function runCompiled<R>(client: PoolClientLike, compiled: CompiledQuery): Promise<QueryResult<R>> {
  const options = shardOptionsOf(compiled);
  if (options === undefined) return runOn<R>(client, compiled.sql, compiled.parameters);
  const values = [...compiled.parameters];
  // The config form only for a name: a custom pool's client sees the plain form otherwise.
  const result = options.preparedName === undefined ? client.query(compiled.sql, values) : client.query({ name: options.preparedName, text: compiled.sql, values });
  return result.then(
    (result) => {
      if (result.fields !== undefined) options.onRowDescription?.({ oids: result.fields.map((field) => field.dataTypeID), parserOf: parsersOf(client) });
      return toQueryResult<R>(result);
    },
    (error: unknown) => Promise.reject(annotateStatementError(error, client)),
  );
}

function toQueryResult<R>({ command, rowCount, rows }: { readonly command: string; readonly rowCount: number | null; readonly rows: unknown[] }): QueryResult<R> {
  const writes = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
  return writes ? { numAffectedRows: BigInt(rowCount ?? 0), rows: (rows ?? []) as R[] } : { rows: (rows ?? []) as R[] };
}

/** A cursor opened on a client: its reads' errors name the client's server. */
export interface OpenCursor {
  /** The next `chunkSize` rows; none once the rows are exhausted. */
  read(chunkSize: number): Promise<unknown[]>;
  /** Closes the cursor (waits for the server's answer). */
  close(): Promise<void>;
}

/**
 * Opens a cursor for `compiled` on `client` (sent with its first read). A {@link ShardStatement}'s
 * field types are noted as pg-cursor asks for each field's parser (the parsers themselves are
 * pg's, as without the option) and reported with the first rows.
 */
export function openCursor(Cursor: CursorConstructor, client: PoolClientLike, compiled: CompiledQuery): OpenCursor {
  const onRowDescription = shardOptionsOf(compiled)?.onRowDescription;
  const oids: number[] = [];
  const config = onRowDescription === undefined ? undefined : { types: { getTypeParser: (oid: number, format?: string) => (oids.push(oid), pgTypes.getTypeParser(oid, format as 'text')) } };
  const cursor = client.query(config === undefined ? new Cursor(compiled.sql, [...compiled.parameters]) : new Cursor(compiled.sql, [...compiled.parameters], config));
  let reported = onRowDescription === undefined;
  return {
    read: (chunkSize) =>
      cursor.read(chunkSize).then(
        (rows) => {
          if (!reported && (oids.length > 0 || rows.length > 0)) {
            reported = true;
            onRowDescription!({ oids, parserOf: globalParsers });
          }
          return rows;
        },
        (error: unknown) => Promise.reject(annotateStatementError(error, client)),
      ),
    close: () => cursor.close(),
  };
}

/**
 * The rows of a statement read through a cursor, `chunkSize` at a time, or fewer when the reader
 * asks for fewer (`next(n)`: a merge that can use only n more rows of a LIMIT); the cursor is closed
 * however the reader stops, except after its connection failed (closing would wait for an answer
 * that cannot come; the broken client is not reused by its pool).
 */
export async function* cursorRows(Cursor: CursorConstructor, client: PoolClientLike, compiled: CompiledQuery, chunkSize: number): AsyncGenerator<unknown[], void, unknown> {
  const cursor = openCursor(Cursor, client, compiled);
  let connectionLost = false;
  let size = chunkSize;
  try {
    for (;;) {
      let rows: unknown[];
      try {
        rows = await cursor.read(size);
      } catch (error) {
        connectionLost = isConnectionFailure(error);
        throw error;
      }
      if (rows.length === 0) return;
      const wanted: unknown = yield rows;
      size = typeof wanted === 'number' && wanted >= 1 ? Math.min(Math.floor(wanted), chunkSize) : chunkSize;
    }
  } finally {
    if (!connectionLost) await cursor.close();
  }
}
