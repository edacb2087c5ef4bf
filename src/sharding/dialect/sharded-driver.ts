import type { DatabaseConnection, Driver, QueryCompiler, TransactionSettings } from 'kysely';
import { ShardedConnection } from './sharded-connection';
import type { ShardedRuntime } from './sharded-runtime';
import { beginStatement, commitStatement, rollbackStatement, savepointStatement } from './transaction-control';

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

  // Transaction control goes through the connection's executeQuery, as in Kysely's PostgresDriver,
  // so Kysely's `log` callback sees BEGIN, COMMIT, ROLLBACK and savepoints (see transaction-control).
  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await connection.executeQuery(beginStatement(settings));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(commitStatement());
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(rollbackStatement());
  }

  async savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(savepointStatement('savepoint', name, compileQuery));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(savepointStatement('rollback to', name, compileQuery));
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(savepointStatement('release', name, compileQuery));
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
