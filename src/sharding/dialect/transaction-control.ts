/**
 * Transaction control statements (BEGIN, COMMIT, ROLLBACK, savepoints) as the driver sends them:
 * through the connection's `executeQuery`, with the SQL Kysely's PostgresDriver sends, so Kysely's
 * `log` callback sees them as it does with PostgresDialect. The connection recognises them by
 * identity (a WeakMap keyed by the CompiledQuery) and runs them on its transaction: BEGIN is
 * deferred until a statement binds the transaction to a shard.
 */
import { CompiledQuery, IdentifierNode, RawNode, createQueryId, type QueryCompiler, type QueryResult, type TransactionSettings } from 'kysely';

/** The savepoint commands Kysely's driver interface issues. */
export type SavepointCommand = 'savepoint' | 'rollback to' | 'release';

/** A transaction control statement the driver sent. */
export type TransactionControl =
  | { readonly kind: 'begin'; readonly settings: TransactionSettings; readonly compiled: CompiledQuery }
  | { readonly kind: 'commit' }
  | { readonly kind: 'rollback' }
  | { readonly kind: 'savepoint'; readonly command: SavepointCommand; readonly name: string; readonly compiled: CompiledQuery };

/** What runs the control statements: the sharded connection. */
export interface TransactionControlTarget {
  beginTransaction(settings: TransactionSettings, begin: CompiledQuery): Promise<void> | void;
  commitTransaction(): Promise<void>;
  rollbackTransaction(): Promise<void>;
  savepointCommand(command: CompiledQuery, kind: SavepointCommand, name: string): Promise<void>;
}

const controls = new WeakMap<CompiledQuery, TransactionControl>();

function mark(compiled: CompiledQuery, control: TransactionControl): CompiledQuery {
  controls.set(compiled, control);
  return compiled;
}

/** BEGIN with Kysely's text: `begin`, or `start transaction` with the isolation level and access mode. */
export function beginStatement(settings: TransactionSettings): CompiledQuery {
  let sql = 'begin';
  if (settings.isolationLevel !== undefined || settings.accessMode !== undefined) {
    sql = 'start transaction';
    if (settings.isolationLevel !== undefined) sql += ` isolation level ${settings.isolationLevel}`;
    if (settings.accessMode !== undefined) sql += ` ${settings.accessMode}`;
  }
  const compiled = CompiledQuery.raw(sql);
  return mark(compiled, Object.freeze({ kind: 'begin', settings, compiled }));
}

export function commitStatement(): CompiledQuery {
  return mark(CompiledQuery.raw('commit'), COMMIT);
}

export function rollbackStatement(): CompiledQuery {
  return mark(CompiledQuery.raw('rollback'), ROLLBACK);
}

const COMMIT: TransactionControl = Object.freeze({ kind: 'commit' });
const ROLLBACK: TransactionControl = Object.freeze({ kind: 'rollback' });

/** A savepoint command compiled as Kysely's PostgresDriver compiles it (the name quoted as an identifier). */
export function savepointStatement(command: SavepointCommand, name: string, compileQuery: QueryCompiler['compileQuery']): CompiledQuery {
  const compiled = compileQuery(RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(name)]), createQueryId());
  return mark(compiled, Object.freeze({ kind: 'savepoint', command, name, compiled }));
}

/** The control statement `compiled` is, if the driver made it. */
export function transactionControlOf(compiled: CompiledQuery): TransactionControl | undefined {
  return controls.get(compiled);
}

const EMPTY: QueryResult<never> = Object.freeze({ rows: Object.freeze([]) as unknown as never[] });

type ControlOf = { readonly [K in TransactionControl['kind']]: Extract<TransactionControl, { readonly kind: K }> };

/** One handler per control kind: a kind added without a handler fails to compile. */
const RUN: { readonly [K in TransactionControl['kind']]: (target: TransactionControlTarget, control: ControlOf[K]) => Promise<void> | void } = Object.freeze({
  begin: (target, control) => target.beginTransaction(control.settings, control.compiled),
  commit: (target) => target.commitTransaction(),
  rollback: (target) => target.rollbackTransaction(),
  savepoint: (target, control) => target.savepointCommand(control.compiled, control.command, control.name),
});

/** Runs a control statement on its target; the result is empty, as PostgreSQL's. */
export async function runTransactionControl(target: TransactionControlTarget, control: TransactionControl): Promise<QueryResult<never>> {
  await (RUN[control.kind] as (target: TransactionControlTarget, control: TransactionControl) => Promise<void> | void)(target, control);
  return EMPTY;
}
