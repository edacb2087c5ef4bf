/**
 * The frame every mover operation runs in: the catalog and the move store, the operator lock, the
 * registered sharded tables, and one result object whatever happens (operational failures are
 * results with a code, never throws).
 */
import { systemClock, type Clock } from '../../kernel/clock';
import { ConfigError, KyselyScaleError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';
import { describeValue, requireInteger, requireNonNegative, requirePositive } from '../../kernel/validate';
import { TopologyCatalog, TOPOLOGY_CATALOG_DEFAULTS, type OperatorEpoch } from '../topology-catalog';
import { CATALOG_DEADLINE_FLAGS, CatalogPool, CatalogTimeoutError, catalogDeadlines } from '../catalog-connections';
import { MoveStore, withGivenTables } from './move-store';
import { MOVE_TUNING_DEFAULTS, MoveContext, type MoveProgress, type MoveTuning, type PhaseHook } from './move-context';
import type { MoveRecord } from './move-record';
import type { ShardedTableSpec } from './shard-guard-sql';
import { MoveFailedError, MoveRefusedError } from './mover-errors';
import { isServerFailure } from '../server-client';
import type { MovePlanSummary, ResultError } from './move-result';

/** Options shared by every mover operation. */
export interface MoverOptions {
  /** Catalog database URL. */
  readonly catalog: string;
  /** Catalog schema. @default 'kysely_scale' */
  readonly schema?: string;
  /** Sharded tables and their key columns (`{ orders: 'user_id' }`), registered in the catalog for later operations. @default the registered ones */
  readonly tables?: Readonly<Record<string, string>>;
  /** Plan only: report slots, rows and the estimated time, change nothing. @default false */
  readonly dryRun?: boolean;
  /** Copy and clean-up throttle, rows per second. @default unlimited */
  readonly maxRowsPerSecond?: number;
  /** Fine tuning; see {@link MOVE_TUNING_DEFAULTS}. */
  readonly tuning?: Partial<MoveTuning>;
  /** @default systemClock */
  readonly clock?: Clock;
  /**
   * Called once with the plan (batches, slots, estimated rows and time) when an operation that
   * moves slots has planned its move, before it changes anything and before the first progress
   * report; a dry run calls it too. Not called when nothing needs to move, nor by `resume`,
   * `abort` and `verify`. The result's `plan` is the same object.
   */
  readonly onPlan?: (plan: MovePlanSummary) => void;
  /** Called with progress reports (phase, rows copied, lag). */
  readonly onProgress?: (progress: MoveProgress) => void;
  /** Test hook called at each phase of each batch. */
  readonly hook?: PhaseHook;
}

/** What the operation frame hands an operation. */
export interface MoverFrame {
  readonly catalog: TopologyCatalog;
  readonly store: MoveStore;
  readonly tables: readonly ShardedTableSpec[];
  /** The move's tuning: the defaults, then the options' (validated). */
  readonly tuning: MoveTuning;
  /** Remembers the tables given with `tables` in the catalog (not in a dry run); call it once they were checked on the shards. */
  registerGivenTables(): Promise<void>;
  readonly lost: AbortSignal;
  /** A context to run `move` in. */
  context(move: MoveRecord): MoveContext;
}

/** Turns any error into a result error (messages redacted). */
export function toResultError(error: unknown): ResultError {
  if (error instanceof KyselyScaleError) return Object.freeze({ code: error.code, message: redactText(error.message), context: error.context });
  const code = typeof (error as { code?: unknown } | null)?.code === 'string' ? (error as { code: string }).code : 'E_UNEXPECTED';
  return Object.freeze({ code, message: redactText(error instanceof Error ? error.message : String(error)), context: {} });
}

/** Runs `fn` under the operator lock (unless `locked` is false: read-only operations) with the catalog, the store and the sharded tables. */
export async function withMover<T>(options: MoverOptions, fn: (frame: MoverFrame) => Promise<T>, locked = true): Promise<T> {
  // Validated before anything changes (the catalog's table list included).
  const tuning = moveTuning(options);
  const schema = options.schema ?? TOPOLOGY_CATALOG_DEFAULTS.schema;
  // The operator lock's heartbeat every tuning.lockHeartbeatMillis (2 s; the catalog's default is 10 s): a mover that lost its lock unnoticed stops sooner.
  const catalog = new TopologyCatalog({ url: options.catalog, schema, clock: options.clock ?? systemClock, heartbeatIntervalMillis: tuning.lockHeartbeatMillis });
  // The move store's connections to the catalog have the catalog's deadlines (defaults): a catalog that stops answering fails the step, never holds it.
  const pool = new CatalogPool(options.catalog, catalogDeadlines({}), 'kysely-scale mover catalog');
  const store = new MoveStore(pool, schema);
  try {
    const installed = await catalog.installed().catch((error: unknown) => {
      // Reaching or logging in to the catalog (not a statement of ours): a coded refusal saying what to check.
      if (!isServerFailure(error) && !(error instanceof CatalogTimeoutError)) throw error;
      const why = redactText(error instanceof Error ? error.message : String(error));
      const what = error instanceof CatalogTimeoutError ? `${redactText(error.summary)}: check --catalog and that its server is up; if it is only slow, raise ${error.option} (${CATALOG_DEADLINE_FLAGS[error.option]})` : `The catalog at ${catalog.redactedUrl} cannot be reached (${why}): check --catalog and that its server is up`;
      throw new MoveRefusedError('catalog-unreachable', `${what}.`, { sqlState: (error as { code?: unknown }).code });
    });
    if (!installed) throw new MoveRefusedError('no-catalog', `The catalog at ${catalog.redactedUrl} is not installed: run \`kysely-scale-admin init\` first.`);
    const dryRun = options.dryRun === true;
    // Idempotent bookkeeping tables, also for a dry run (its plan reads them; they hold no state until a move).
    await store.install();
    const run = async (lost: AbortSignal, confirm: () => Promise<void>, epoch: OperatorEpoch | undefined): Promise<T> => {
      const given = Object.entries(options.tables ?? {}).map(([name, keyColumn]) => ({ name, keyColumn }));
      const tables = withGivenTables(await store.tables(), given);
      const clock = options.clock ?? systemClock;
      return fn({
        catalog,
        store,
        tables,
        tuning,
        // Registered once the operation checked them on the shards; a dry run registers none.
        registerGivenTables: () => (dryRun || given.length === 0 ? Promise.resolve() : store.registerTables(given)),
        lost,
        context: (move) =>
          new MoveContext(catalog, store, move, tuning, clock, options.onProgress ?? (() => undefined), options.hook, lost, async () => {
            await confirm().catch((error: unknown) => {
              throw new MoveFailedError(`The operator lock could not be confirmed (${(error as Error).message}); stopping before changing anything else.`, { moveId: move.id, reason: 'lock-lost' }, error);
            });
          }, epoch),
      });
    };
    return await (locked ? catalog.withOperatorLock(run) : run(new AbortController().signal, async () => undefined, undefined));
  } finally {
    await catalog.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

/** Most pause per unit of work: beyond it one 3 ms slice would pause for over a second. */
export const MAX_NICE_RATIO = 100;

/** The move's tuning: the defaults, then `options`; refused (`E_INVALID_CONFIG`) when out of range. */
function moveTuning(options: MoverOptions): MoveTuning {
  const tuning: MoveTuning = Object.freeze({ ...MOVE_TUNING_DEFAULTS, ...(options.tuning ?? {}), ...(options.maxRowsPerSecond === undefined ? {} : { maxRowsPerSecond: options.maxRowsPerSecond }) });
  if (tuning.maxRowsPerSecond !== undefined && !(Number.isFinite(tuning.maxRowsPerSecond) && tuning.maxRowsPerSecond > 0)) {
    throw new ConfigError('maxRowsPerSecond', `must be a number of rows per second above 0 (leave it out for no throttle), got ${describeValue(tuning.maxRowsPerSecond)}`);
  }
  requireNonNegative('tuning.niceRatio', tuning.niceRatio);
  if (tuning.niceRatio > MAX_NICE_RATIO) throw new ConfigError('tuning.niceRatio', `must be at most ${MAX_NICE_RATIO}, got ${describeValue(tuning.niceRatio)}`);
  requireNonNegative('tuning.probeSlowMillis', tuning.probeSlowMillis);
  requirePositive('tuning.statementTimeoutMillis', tuning.statementTimeoutMillis);
  requirePositive('tuning.copyIdleTimeoutMillis', tuning.copyIdleTimeoutMillis);
  // A timer's longest delay: past it Node fires after 1 ms, a heartbeat every millisecond (review 66).
  requireInteger('tuning.lockHeartbeatMillis', tuning.lockHeartbeatMillis, 1, 2 ** 31 - 1);
  return tuning;
}
