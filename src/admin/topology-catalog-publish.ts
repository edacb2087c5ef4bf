/**
 * Publishing a topology version in one round trip, and learning the outcome of one whose answer
 * never came. A publish sent on a connection that then stops answering (its deadline passed, or
 * the connection broke) may have committed, may never commit, or may still commit later: its bytes
 * can be held on the wire, or by a frozen server, and be run once they arrive. So before the
 * publish reports a failure, a fresh connection ends the publish's server process (after which it
 * can never commit) and reads whether the version is in the catalog. Only when the catalog cannot
 * be asked does the publish fail with {@link PublishOutcomeUnknownError}.
 */
import { Client } from 'pg';
import { isConnectionFailure } from '../cluster/connection-failure';
import { systemClock } from '../kernel/clock';
import { withDeadline } from '../kernel/deadline';
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';
import { TopologyConflictError } from './admin-errors';
import { CatalogTimeoutError, connectCatalogClient, processIdOf, sessionConfig, timedQuery, type CatalogDeadlines, type CatalogSession } from './catalog-connections';
import { destroySocket } from './server-client';

/**
 * A publish was sent and its answer never came (its statement's deadline passed, or its connection
 * broke), and the catalog could not be asked what became of it: version `version` may be in the
 * catalog now, or may still arrive there later (bytes held on the wire or by a frozen server are
 * run once they arrive). `outcomeUnknown` is `true`; `code` `E_CATALOG_UNAVAILABLE`; `cause` the
 * publish's own failure; `context`: `catalog` (password redacted), `version`, `reason` (why the
 * outcome could not be learnt).
 *
 * Do not act as if it was not published (a slot move must not revert its cutover on it), nor as if
 * it was. The outcome becomes known through the version number: a publish of `version` commits
 * only while the catalog's latest version is below it, so once any version at or above `version`
 * is in the catalog, the lost one can never commit; then read `version` (`catalog.version(n)`)
 * to see which topology holds it.
 */
export class PublishOutcomeUnknownError extends KyselyScaleError<typeof ErrorCodes.CATALOG_UNAVAILABLE> {
  readonly outcomeUnknown = true as const;
  readonly version: number;
  readonly catalog: string;

  constructor(catalog: string, version: number, failure: string, reason: string, cause: unknown) {
    super(
      ErrorCodes.CATALOG_UNAVAILABLE,
      `The catalog ${catalog} did not confirm the publish of topology version ${version} (${failure}), and its outcome could not be learnt (${reason}): ` +
        `version ${version} may be published now, or later once held bytes reach the catalog. Act on neither outcome until the catalog holds version ${version} or a newer one.`,
      { cause, context: { catalog, version, reason } },
    );
    this.version = version;
    this.catalog = catalog;
  }
}

/** Where and how a publish runs. */
export interface PublishTarget {
  /** The catalog's URL (with its password: the outcome check connects anew). */
  readonly url: string;
  /** The URL with its password redacted. */
  readonly catalog: string;
  /** The topology table, quoted (`"schema"."topology"`). */
  readonly table: string;
  readonly channel: string;
  /** The application name of the publish's session: only a server process of that name is ended. */
  readonly applicationName: string;
  readonly deadlines: Required<CatalogDeadlines>;
}

/** One version to publish. */
export interface PublishedVersion {
  readonly version: number;
  /** Its document, as JSON text. */
  readonly document: string;
  readonly note: string | undefined;
}

/**
 * A condition a publish commits under, checked in its transaction after the catalog's lock (the
 * mover's: no other command saved the move since this mover's last save). Rows it reads should be
 * locked (`for share`): a writer that would make it false then waits for the publish to end, so
 * once that writer's statement returns, a publish not in the catalog never will be.
 */
export interface PublishPrecondition {
  /**
   * One boolean SQL expression on the catalog's database, inlined in the publish's multi-statement
   * query (no bind parameters): from trusted code only, never built from input.
   */
  readonly sql: string;
  /** The error the publish fails with when the condition is false (nothing was published). */
  refused(): Error;
}

/** SQL text of a literal: base64 (which holds no quote or backslash) decoded by the server. */
function literal(text: string): string {
  return `convert_from(decode('${Buffer.from(text, 'utf8').toString('base64')}', 'base64'), 'UTF8')`;
}

/**
 * Publishes `next` on `session` (released here, dropped when lost): committed, or a conflict
 * ({@link TopologyConflictError}), or the catalog's own error (nothing written), or, when the
 * answer never came, whatever {@link settleLostPublish} learns.
 */
export async function publishOn(session: CatalogSession, target: PublishTarget, next: PublishedVersion, precondition?: PublishPrecondition): Promise<void> {
  const { table, deadlines } = target;
  // One round trip, since the publish is the last step of a move's cutover, when writers of the
  // moved slots wait: a multi-statement simple query (so no bind parameters). The transaction runs
  // under the statement deadline on the server too (SET LOCAL: nothing set at login, which
  // PgBouncer refuses), so a catalog that answers but is slow cancels it itself, nothing written.
  // The lock serializes publishers, so the version check and the insert, one statement whose
  // snapshot is taken after the lock, see the same latest version; the notification goes out at
  // the commit. The precondition is checked after the lock too, in the same statement.
  const sql = `begin; set local statement_timeout = ${deadlines.statementTimeoutMillis}; lock table ${table} in exclusive mode;
     with latest as (select coalesce(max(version), 0) as version from ${table}),
       allowed as (select ${precondition === undefined ? 'true' : `(${precondition.sql})`} as ok),
       inserted as (insert into ${table} (version, document, note)
         select ${next.version}, ${literal(next.document)}::jsonb, ${next.note === undefined ? 'null' : literal(next.note)} from latest, allowed
         where latest.version < ${next.version} and allowed.ok returning version)
     select (select version from latest) as latest, (select count(pg_notify(${literal(target.channel)}, version::text))::int from inserted) as inserted,
       (select ok from allowed) as allowed;
     commit`;
  let rows: { latest: number; inserted: number; allowed: boolean }[];
  try {
    const results = (await session.query(sql)) as unknown as { rows: { latest: number; inserted: number; allowed: boolean }[] }[];
    rows = results[3]?.rows ?? [];
  } catch (error) {
    if (session.lost.aborted || isConnectionFailure(error)) {
      // Sent, and no answer: never a rollback over that connection (it is dropped).
      const processId = session.processId;
      session.release(true);
      return settleLostPublish(target, next, processId, error, precondition);
    }
    // The catalog answered with an error: nothing was written; end the aborted transaction.
    await session.query('rollback').catch(() => undefined);
    session.release();
    throw error;
  }
  session.release();
  if (precondition !== undefined && rows[0]?.allowed !== true) throw precondition.refused();
  const latest = rows[0]?.latest ?? 0;
  if (Number(rows[0]?.inserted) !== 1) {
    throw new TopologyConflictError(`Topology version ${next.version} is not newer than the catalog's version ${latest}: reload the latest, apply your change to it and publish again.`, {
      latest,
      attempted: next.version,
    });
  }
}

/** What the outcome check found: the version committed, is another topology's, is absent for good, or is absent for now. */
type Outcome =
  | { readonly kind: 'committed' }
  | { readonly kind: 'taken'; readonly latest: number }
  | { readonly kind: 'absent' }
  | { readonly kind: 'refused' }
  | { readonly kind: 'unknown'; readonly reason: string };

/**
 * The outcome of a publish whose answer never came (`failure`), learnt on a fresh connection
 * within `connectionTimeoutMillis + statementTimeoutMillis`: its server process `processId` is
 * ended (`pg_terminate_backend`, only a process of the publish's role and application name) and
 * waited for until gone, then version `next.version` is read. Committed: returns (published).
 * Another topology holds the version: {@link TopologyConflictError}. Not there, the process gone:
 * it never will be; `precondition.refused()` is thrown if the precondition is false now, else the
 * publish's own failure (a {@link CatalogTimeoutError} saying so, or the connection error),
 * retryable. Otherwise {@link PublishOutcomeUnknownError}.
 */
export async function settleLostPublish(target: PublishTarget, next: PublishedVersion, processId: number | undefined, failure: unknown, precondition?: PublishPrecondition): Promise<void> {
  const { deadlines } = target;
  const budget = deadlines.connectionTimeoutMillis + deadlines.statementTimeoutMillis;
  const client = new Client(sessionConfig(target.url, deadlines, 'kysely-scale catalog publish check'));
  client.on('error', () => undefined); // a dropped check fails its own statement; nothing else listens
  const failureText = failure instanceof CatalogTimeoutError ? `no answer within ${failure.millis} ms` : `the connection broke: ${(failure as Error | null)?.message ?? String(failure)}`;
  let outcome: Outcome;
  try {
    // Real time on purpose: a test's ManualClock must not hold a publish.
    outcome = await withDeadline(checkOutcome(client, target, next, processId, precondition), budget, 'the publish outcome check', { clock: systemClock, onLate: () => destroySocket(client) });
  } catch (error) {
    const why = error instanceof CatalogTimeoutError ? error.summary.replace(`The catalog ${target.catalog} `, 'it ') : ((error as Error | null)?.message ?? String(error));
    outcome = { kind: 'unknown', reason: `asked on a fresh connection, ${why}` };
  } finally {
    void withDeadline(client.end(), deadlines.connectionTimeoutMillis, 'closing the outcome check', { onLate: () => destroySocket(client) }).catch(() => undefined);
  }
  switch (outcome.kind) {
    case 'committed':
      return;
    case 'taken':
      throw new TopologyConflictError(
        `Topology version ${next.version} was published by someone else while this publish went unanswered (the catalog's latest is ${outcome.latest}): reload the latest, apply your change to it and publish again.`,
        { latest: outcome.latest, attempted: next.version },
      );
    case 'refused':
      throw precondition!.refused();
    case 'absent':
      if (failure instanceof CatalogTimeoutError) {
        throw new CatalogTimeoutError(target.catalog, `the publish of topology version ${next.version}`, failure.millis, 'statementTimeoutMillis', failure, {
          outcome: `its server process was ended and the catalog does not hold version ${next.version}, so nothing was published (publish again)`,
        });
      }
      throw failure;
    case 'unknown':
      throw new PublishOutcomeUnknownError(target.catalog, next.version, failureText, outcome.reason, failure);
  }
}

async function checkOutcome(client: Client, target: PublishTarget, next: PublishedVersion, processId: number | undefined, precondition: PublishPrecondition | undefined): Promise<Outcome> {
  const { deadlines } = target;
  await connectCatalogClient(client, target.url, deadlines);
  const query = <R extends object>(text: string, values: unknown[]) => timedQuery<R & Record<string, unknown>>(client, text, values, target.catalog, deadlines.statementTimeoutMillis);
  // Behind a pooler (PgBouncer) a session's number is the pooler's own, not a server process's:
  // then the publish's process cannot be found, and only a committed version settles it.
  const { rows: me } = await query<{ pid: number }>('select pg_backend_pid() as pid', []);
  const direct = processId !== undefined && me[0]?.pid === processIdOf(client);
  if (direct) {
    const ours = 'pid = $1 and usename = current_user and application_name = $2';
    await query(`select pg_terminate_backend(pid) from pg_stat_activity where ${ours}`, [processId, target.applicationName]);
    // Ended: a transaction of the process committed before, or never will.
    for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
      const { rows } = await query<{ alive: boolean }>(`select exists (select 1 from pg_stat_activity where ${ours}) as alive`, [processId, target.applicationName]);
      if (rows[0]?.alive !== true) break;
      await new Promise<void>((resolve) => systemClock.setTimeout(resolve, pause));
    }
  }
  const { rows } = await query<{ latest: number | null; ours: boolean | null }>(
    `select (select max(version) from ${target.table}) as latest, (select document = $2::jsonb from ${target.table} where version = $1) as ours`,
    [next.version, next.document],
  );
  const row = rows[0];
  if (row?.ours === true) return { kind: 'committed' };
  if (row?.ours === false) return { kind: 'taken', latest: Number(row.latest) };
  if (direct) {
    // Absent for good: say why when the precondition is false now (the likeliest reason it was not published).
    if (precondition !== undefined) {
      const { rows: allowed } = await query<{ ok: boolean }>(`select (${precondition.sql}) as ok`, []);
      if (allowed[0]?.ok !== true) return { kind: 'refused' };
    }
    return { kind: 'absent' };
  }
  return { kind: 'unknown', reason: `its server process is not known (a connection pooler between this process and the catalog?), and version ${next.version} is not in the catalog yet` };
}
