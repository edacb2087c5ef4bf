/**
 * The fence contract between the shards and every router: during and after a slot move, a shard
 * refuses statements that a stale topology sent it, with one of two SQLSTATEs the dialect
 * recognises (reload the topology, retry once on the new owner). Sessions say which topology they
 * route by in the setting {@link TOPOLOGY_VERSION_SETTING}; a session without it is not fenced.
 */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** SQLSTATE of "this session's topology version is older than this shard requires" (a slot moved to or from it). */
export const STALE_TOPOLOGY_SQLSTATE = 'KS001';
/** SQLSTATE of "this row's slot is fenced: it is being moved; writes wait for the new topology". */
export const SLOT_FENCED_SQLSTATE = 'KS002';
/** The session setting that carries a connection's topology version (`set kysely_scale.topology_version = '7'`). */
export const TOPOLOGY_VERSION_SETTING = 'kysely_scale.topology_version';

/** What a shard's fence refusal says. */
export interface FenceRefusal {
  /** `stale`: the session's version is too old; `fenced`: the slot is being moved right now. */
  readonly kind: 'stale' | 'fenced';
  /** The topology version the caller needs before retrying (for `fenced`, the version the move will publish), when known. */
  readonly requiredVersion: number | undefined;
  /** The slot concerned (fenced refusals only). */
  readonly slot: number | undefined;
}

/** The fence refusal a PostgreSQL error carries, or `undefined` when it is another error. */
export function fenceRefusalOf(error: unknown): FenceRefusal | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== STALE_TOPOLOGY_SQLSTATE && code !== SLOT_FENCED_SQLSTATE) return undefined;
  let detail: { required?: unknown; slot?: unknown } = {};
  try {
    detail = JSON.parse(String((error as { detail?: unknown }).detail ?? '{}')) as typeof detail;
  } catch {
    // A detail that is not ours still is a refusal; only the version is unknown.
  }
  return Object.freeze({
    kind: code === STALE_TOPOLOGY_SQLSTATE ? 'stale' : 'fenced',
    requiredVersion: typeof detail.required === 'number' ? detail.required : undefined,
    slot: typeof detail.slot === 'number' ? detail.slot : undefined,
  });
}

/**
 * A shard refused a statement because the caller's topology is stale or the slot is being moved,
 * and the topology could not be brought up to date in time. Nothing was written. Retry later.
 */
export class StaleTopologyError extends KyselyScaleError<typeof ErrorCodes.STALE_TOPOLOGY> {
  /** Always true: the statement did not run, so it is safe to retry. */
  readonly retryable = true;
  constructor(message: string, cause: unknown, context: { shardId?: string; version?: number; requiredVersion?: number | undefined } = {}) {
    super(ErrorCodes.STALE_TOPOLOGY, message, { cause, context });
  }
}

/** The statement that tags a session with the topology version it routes by (`$1`: the version as text). */
export const SET_TOPOLOGY_VERSION_SQL = `select set_config('${TOPOLOGY_VERSION_SETTING}', $1, false)`;
