/**
 * The live state of a cluster, asked of every server now: each shard's primary and replicas
 * (reachable, actual role, replication lag in bytes and seconds), the slots each shard owns, its
 * rows measured now at a bounded cost (`table-estimate.ts`: about `rowSamplePages` pages read per
 * shard per call, whatever its tables, since a dashboard may call this every few seconds), its
 * latest migration, and the moves in progress. Every wait has a deadline: a
 * server that does not answer within `timeoutMillis` is reported unreachable, never waited for.
 * Never throws for what it reads (only for invalid options, `E_INVALID_CONFIG`): what cannot be
 * read is reported in the result (`error`, `problems`).
 *
 * The CLI's `status` and the dashboard's JSON API are thin shells over {@link liveStatus}.
 */
import { parseLsn } from '../cluster/wal-position';
import type { Topology } from '../cluster/topology';
import { DeadlineError, withDeadline } from '../kernel/deadline';
import { requireInteger } from '../kernel/validate';
import { redactText, redactUrl } from '../kernel/redact';
import { shardMigrationStatus } from './migration-status';
import { withServerClient, type ServerQueries } from './server-client';
import { TopologyCatalog } from './topology-catalog';
import { moveHistory } from './mover/move-control';
import type { MoveSummary } from './mover/move-result';
import { formatSlotRanges } from './mover/slot-ranges';
import { DATABASE_STATISTICS_SQL, estimateDatabaseRows } from './mover/table-estimate';

/** Options of {@link liveStatus}. */
export interface LiveStatusOptions {
  /** Deadline of each server's check (connect and queries), in ms. @default 2000 */
  readonly timeoutMillis?: number;
  /** Read each shard's latest Kysely migration. @default true */
  readonly migrations?: boolean;
  /**
   * About how many 8 kB pages of its tables each shard's row figure reads per call, in all, shared
   * among its tables in proportion to their sizes (short runs of pages spread evenly over each,
   * the same pages each call); a shard whose tables hold fewer is counted exactly. 0:
   * `pg_class.reltuples` only (no table read; stale after a move until ANALYZE). @default 500
   */
  readonly rowSamplePages?: number;
}

/** Defaults of {@link LiveStatusOptions}. */
export const LIVE_STATUS_DEFAULTS = Object.freeze({ timeoutMillis: 2000, migrations: true, rowSamplePages: 500 });

/** How long a shard's row figure waits for a table's lock (a migration's) before it gives the statistics instead. */
const ROWS_LOCK_TIMEOUT_MILLIS = 200;

/** What one server answered. */
export interface ServerHealth {
  /** The role the topology gives it. */
  readonly role: 'primary' | 'replica';
  /** Its URL, password redacted. */
  readonly server: string;
  readonly reachable: boolean;
  /** `pg_is_in_recovery()`: true on a standby; null when unreachable. */
  readonly inRecovery: boolean | null;
  /** Whether its actual role matches the topology (a primary not in recovery, a replica in recovery). */
  readonly roleMatches: boolean | null;
  /** WAL bytes a replica is behind its primary (null for a primary, or when either did not answer). */
  readonly lagBytes: number | null;
  /** Seconds since the last replayed transaction while a replica has WAL left to replay (0 when caught up). */
  readonly lagSeconds: number | null;
  /** Time the check took, in ms. */
  readonly latencyMillis: number;
  /** Why it is unreachable or its check failed (password redacted). */
  readonly error: string | null;
}

/** One shard. */
export interface ShardLiveStatus {
  readonly id: string;
  /** Slots owned. */
  readonly slots: number;
  /** Slots owned, as ranges (`0-1023,2048-2100`). */
  readonly slotRanges: string;
  /**
   * Rows of its user tables, measured on the primary now: counted, or from a sample of about
   * `rowSamplePages` pages of them; `pg_class.reltuples` when the sample could not be read in time
   * (see {@link rowEstimateSource}); null when unreachable.
   */
  readonly rowEstimate: number | null;
  /**
   * Where {@link rowEstimate} comes from: `measured` (counted or sampled now; the statistics stand in
   * for a table locked past 200 ms, and beyond a shard's 64 largest tables), `statistics` (the
   * sample did not finish within `timeoutMillis` of the health answer, or could not be read:
   * `pg_class.reltuples`, stale after a move until ANALYZE); null when unreachable.
   */
  readonly rowEstimateSource: 'measured' | 'statistics' | null;
  /** Its latest Kysely migration; null when none ran or it could not be read. */
  readonly migration: string | null;
  readonly servers: readonly ServerHealth[];
}

/** The live state of the cluster. */
export interface LiveStatus {
  /** Catalog URL, password redacted. */
  readonly catalog: string;
  /** When the checks started (ISO 8601). */
  readonly checkedAt: string;
  readonly version: number | null;
  readonly slotCount: number | null;
  readonly shards: readonly ShardLiveStatus[];
  /** Moves not finished. */
  readonly moves: readonly MoveSummary[];
  /** What needs attention, one sentence each (an unreachable server, a role mismatch, migration drift). */
  readonly problems: readonly string[];
  /** Why the catalog could not be read; null when it was. */
  readonly error: string | null;
}

/** Checks every server of the catalog's latest topology now (see the module comment). */
export async function liveStatus(catalogUrl: string, options: LiveStatusOptions = {}): Promise<LiveStatus> {
  const timeoutMillis = options.timeoutMillis ?? LIVE_STATUS_DEFAULTS.timeoutMillis;
  const rowSamplePages = requireInteger('rowSamplePages', options.rowSamplePages ?? LIVE_STATUS_DEFAULTS.rowSamplePages, 0);
  const checkedAt = new Date().toISOString();
  const catalog = new TopologyCatalog({ url: catalogUrl, connectionTimeoutMillis: timeoutMillis, statementTimeoutMillis: timeoutMillis });
  const base = { catalog: catalog.redactedUrl, checkedAt };
  let topology: Topology | undefined;
  try {
    topology = await withDeadline(catalog.installed().then((installed) => (installed ? catalog.latest() : undefined)), timeoutMillis, 'the catalog');
  } catch (error) {
    void catalog.close().catch(() => undefined);
    const message = redactText(errorMessage(error), [catalogUrl]);
    return Object.freeze({ ...base, version: null, slotCount: null, shards: [], moves: [], problems: [`catalog: ${message}`], error: message });
  }
  void catalog.close().catch(() => undefined);
  if (topology === undefined) return Object.freeze({ ...base, version: null, slotCount: null, shards: [], moves: [], problems: ['no topology published yet (run init)'], error: null });
  const latest = topology;
  const [shards, migrations, moves] = await Promise.all([
    Promise.all(latest.shards.map((shard) => checkShard(latest, shard.id, timeoutMillis, rowSamplePages))),
    options.migrations === false
      ? Promise.resolve(undefined)
      : withDeadline(
          shardMigrationStatus(latest.shards.map((s) => ({ id: s.id, url: s.primary.url })), { connectionTimeoutMillis: timeoutMillis, statementTimeoutMillis: timeoutMillis }),
          timeoutMillis * 2,
          'migrations',
        ).catch(() => undefined),
    withDeadline(moveHistory({ catalog: catalogUrl, limit: 20 }), timeoutMillis * 2, 'moves').catch(() => undefined),
  ]);
  const latestMigration = new Map((migrations?.shards ?? []).map((m) => [m.shardId, m.latest]));
  const problems: string[] = [];
  for (const shard of shards) {
    for (const s of shard.servers) {
      if (!s.reachable) problems.push(`${shard.id} ${s.role} ${s.server} is unreachable: ${s.error ?? 'no answer'}`);
      else if (s.roleMatches === false) problems.push(`${shard.id} ${s.role} ${s.server} is ${s.inRecovery === true ? 'in recovery (a standby)' : 'not in recovery (a primary)'}`);
    }
  }
  if (migrations?.drift === true) problems.push('migrations drifted: some shards lack migrations others have run');
  if (moves === undefined || !moves.ok) problems.push('moves could not be read');
  return Object.freeze({
    ...base,
    version: latest.version,
    slotCount: latest.slotCount,
    shards: shards.map((s) => Object.freeze({ ...s, migration: latestMigration.get(s.id) ?? null })),
    moves: (moves?.moves ?? []).filter((m) => m.status === 'open'),
    problems,
    error: null,
  });
}

interface PrimaryAnswer {
  readonly inRecovery: boolean;
  readonly lsn: bigint | null;
  readonly rows: number;
  readonly rowsSource: 'measured' | 'statistics';
  /** When it answered the check (the row figure comes after). */
  readonly answeredAt: number;
}

async function checkShard(topology: Topology, shardId: string, timeoutMillis: number, rowSamplePages: number): Promise<Omit<ShardLiveStatus, 'migration'>> {
  const shard = topology.shardById(shardId)!;
  const slots = topology.slotsOf(shardId);
  const started = performance.now();
  // The row figure has a deadline of its own after the health answer: a slow sample (a slow link,
  // a busy server) gives the statistics, never an unreachable primary.
  const primary = await check(shard.primary.url, `${shardId} primary`, timeoutMillis, async (client) => {
    const { rows } = await client.query<{ recovery: boolean; lsn: string | null; statistics: number }>(
      `select pg_is_in_recovery() as recovery, case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end as lsn, ${DATABASE_STATISTICS_SQL} as statistics`,
    );
    const answeredAt = performance.now();
    const row = rows[0]!;
    if (answeredAt - started > timeoutMillis + CHECK_GRACE_MILLIS) throw new DeadlineError(`${shardId} primary`, timeoutMillis + CHECK_GRACE_MILLIS);
    // Not pg_class.reltuples, which a move leaves stale until ANALYZE (its target's too low, its cleaned source's too high).
    const estimated = await withDeadline(estimateDatabaseRows(client, rowSamplePages, ROWS_LOCK_TIMEOUT_MILLIS), timeoutMillis, 'the row estimate').then(
      (n) => ({ rows: n, rowsSource: rowSamplePages > 0 ? ('measured' as const) : ('statistics' as const) }),
      () => ({ rows: Math.round(row.statistics), rowsSource: 'statistics' as const }),
    );
    return { inRecovery: row.recovery, lsn: row.lsn === null ? null : parseLsn(row.lsn), ...estimated, answeredAt } satisfies PrimaryAnswer;
  }, timeoutMillis + CHECK_GRACE_MILLIS);
  const servers: ServerHealth[] = [
    health('primary', shard.primary.redactedUrl, started, primary, (a) => ({ inRecovery: a.inRecovery, roleMatches: !a.inRecovery, lagBytes: null, lagSeconds: null }), primary.ok ? primary.value.answeredAt : undefined),
  ];
  const replicas = await Promise.all(
    shard.replicas.map(async (replica) => {
      const at = performance.now();
      const answer = await check(replica.url, `${shardId} replica`, timeoutMillis, async (client) => {
        const { rows } = await client.query<{ recovery: boolean; replay: string | null; caught_up: boolean | null; seconds: number | null }>(
          `select pg_is_in_recovery() as recovery, pg_last_wal_replay_lsn()::text as replay,
                  pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() as caught_up,
                  extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as seconds`,
        );
        return rows[0]!;
      });
      return health('replica', replica.redactedUrl, at, answer, (a) => {
        const primaryLsn = primary.ok ? primary.value.lsn : null;
        const lagBytes = primaryLsn === null || a.replay === null ? null : Math.max(0, Number(primaryLsn - parseLsn(a.replay)));
        // A replica that replayed all it received and is not behind the primary has no lag, however old its last transaction is.
        const lagSeconds = lagBytes === 0 || a.caught_up === true ? (lagBytes === null ? null : 0) : a.seconds === null ? null : Math.max(0, a.seconds);
        return { inRecovery: a.recovery, roleMatches: a.recovery, lagBytes, lagSeconds };
      });
    }),
  );
  servers.push(...replicas);
  return { id: shardId, slots: slots.length, slotRanges: formatSlotRanges(slots), rowEstimate: primary.ok ? primary.value.rows : null, rowEstimateSource: primary.ok ? primary.value.rowsSource : null, servers };
}

type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** What a check's deadline allows beyond `timeoutMillis` (the server's own statement timeout answers first). */
const CHECK_GRACE_MILLIS = 500;

/** Runs `fn` on a fresh connection to `url` within `timeoutMillis` (connection and statements), and `extraMillis` more for work after its health answer. */
async function check<T>(url: string, label: string, timeoutMillis: number, fn: (client: ServerQueries) => Promise<T>, extraMillis = 0): Promise<Checked<T>> {
  try {
    const value = await withDeadline(withServerClient(url, label, fn, { connectionTimeoutMillis: timeoutMillis, statementTimeoutMillis: timeoutMillis }), timeoutMillis + CHECK_GRACE_MILLIS + extraMillis, label);
    return { ok: true, value };
  } catch (error) {
    // The server is named beside the error already: drop the prefix withServerClient gave it (one URL per line of output).
    const message = redactText(errorMessage(error), [url]);
    const prefix = `${label} ${redactUrl(url)}: `;
    return { ok: false, error: message.startsWith(prefix) ? message.slice(prefix.length) : message };
  }
}

function health<T>(
  role: 'primary' | 'replica',
  server: string,
  started: number,
  answer: Checked<T>,
  fields: (value: T) => Pick<ServerHealth, 'inRecovery' | 'roleMatches' | 'lagBytes' | 'lagSeconds'>,
  answeredAt = performance.now(),
): ServerHealth {
  const latencyMillis = Math.round((answeredAt - started) * 10) / 10;
  if (!answer.ok) return Object.freeze({ role, server, reachable: false, inRecovery: null, roleMatches: null, lagBytes: null, lagSeconds: null, latencyMillis, error: answer.error });
  return Object.freeze({ role, server, reachable: true, ...fields(answer.value), latencyMillis, error: null });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
