import type { DatabaseConnection, Driver, QueryCompiler, TransactionSettings } from 'kysely';
import { CompiledQuery, IdentifierNode, RawNode, createQueryId } from 'kysely';
import { ShardedConnection } from './sharded-connection';
import type { ShardedRuntime } from './sharded-runtime';

/** Kysely `Driver` over many PostgreSQL servers: every connection it hands out is a {@link ShardedConnection}. */
export class ShardedDriver implements Driver {
  readonly #runtime: ShardedRuntime;
  // Released connections are reused: Kysely acquires one per query, and a fresh object each time
  // costs an allocation plus an entry in Kysely's WeakSet of known connections.
  readonly #idle: ShardedConnection[] = [];

  constructor(runtime: ShardedRuntime) {
    this.#runtime = runtime;
  }

  async init(): Promise<void> {
    // Pools are created on first use of each server.
  }

  acquireConnection(): Promise<DatabaseConnection> {
    return Promise.resolve(this.#idle.pop() ?? new ShardedConnection(this.#runtime));
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    (connection as ShardedConnection).beginTransaction(settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return (connection as ShardedConnection).commitTransaction();
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return (connection as ShardedConnection).rollbackTransaction();
  }

  savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    return (connection as ShardedConnection).savepointCommand(savepointQuery('savepoint', name, compileQuery), 'savepoint', name);
  }

  rollbackToSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    return (connection as ShardedConnection).savepointCommand(savepointQuery('rollback to', name, compileQuery), 'rollback to', name);
  }

  releaseSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    return (connection as ShardedConnection).savepointCommand(savepointQuery('release', name, compileQuery), 'release', name);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const sharded = connection as ShardedConnection;
    const pending = sharded.release();
    if (pending !== undefined) return pending.then(() => this.#recycle(sharded));
    this.#recycle(sharded);
    return RESOLVED;
  }

  #recycle(connection: ShardedConnection): void {
    if (this.#idle.length < MAX_IDLE_CONNECTIONS) this.#idle.push(connection);
  }

  destroy(): Promise<void> {
    return this.#runtime.destroy();
  }
}

const MAX_IDLE_CONNECTIONS = 256;
const RESOLVED: Promise<void> = Promise.resolve();

function savepointQuery(command: string, name: string, compileQuery: QueryCompiler['compileQuery']): CompiledQuery {
  // The same node Kysely's own PostgresDriver builds, so the identifier is quoted by the compiler.
  return compileQuery(RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(name)]), createQueryId());
}
