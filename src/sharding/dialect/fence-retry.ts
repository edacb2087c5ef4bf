/**
 * A statement refused by a shard's fence (a slot moved, or is moving): the router's topology is
 * brought up to the version the shard asks for, from `topologySource`, and the statement runs once
 * more, routed by it. Inside a transaction, or without a source, or when the version does not come
 * in time (or a primary session the connection holds does not take it in time), the caller gets
 * {@link StaleTopologyError}: retryable, nothing was written.
 */
import { catchUpTopology } from '../../cluster/topology-catch-up';
import { fenceRefusalOf, StaleTopologyError } from '../../cluster/topology-fence';
import { systemClock } from '../../kernel/clock';
import { withDeadline } from '../../kernel/deadline';
import type { HeldClients } from './held-clients';
import type { ShardedRuntime } from './sharded-runtime';

/** Shortest deadline of a held primary session's re-tag, whatever `fenceWaitMillis` (0 waits for no version, but a re-tag is a round trip). */
const MIN_RETAG_MILLIS = 1000;

/** What a connection hands {@link retryAfterRefusal}. */
export interface RefusedStatement<T> {
  readonly inTransaction: boolean;
  /** Brings the sessions this connection already holds to the new topology (before the retry); see {@link refreshHeldSessions}. */
  readonly refreshSessions: () => Promise<void>;
  /** Plans and runs the statement again with the runtime's (new) topology. */
  readonly rerun: () => Promise<T>;
}

/** Rethrows `error` unless it is a fence refusal; then catches up and reruns once. */
export async function retryAfterRefusal<T>(runtime: ShardedRuntime, error: unknown, statement: RefusedStatement<T>): Promise<T> {
  const refusal = fenceRefusalOf(error);
  if (refusal === undefined) throw error;
  const context = { version: runtime.topology.version, requiredVersion: refusal.requiredVersion };
  if (statement.inTransaction) {
    throw new StaleTopologyError(`A shard refused a statement of this transaction for a slot move (${refusal.kind}); the transaction cannot continue: roll it back and run it again.`, error, context);
  }
  const source = runtime.topologySource;
  if (source === undefined) {
    throw new StaleTopologyError(`A shard refused this statement for a slot move (${refusal.kind}) and the dialect has no topologySource to reload from: nothing was written; reload the topology and retry.`, error, context);
  }
  // Real time on purpose: a test's ManualClock must not hold a router in this wait forever.
  const reached = await catchUpTopology(runtime, source, refusal.requiredVersion ?? runtime.topology.version + 1, { waitMillis: runtime.fenceWaitMillis, clock: systemClock });
  if (!reached) {
    throw new StaleTopologyError(`A shard refused this statement for a slot move (${refusal.kind}) and topology version ${refusal.requiredVersion ?? '(newer)'} was not published within ${runtime.fenceWaitMillis} ms: nothing was written; retry later.`, error, context);
  }
  try {
    await statement.refreshSessions();
  } catch (failure) {
    const why = (failure as Error | null)?.message ?? String(failure);
    throw new StaleTopologyError(`A shard refused this statement for a slot move (${refusal.kind}); topology version ${runtime.topology.version} was loaded but a session this connection holds did not take it (${why}): nothing was written; retry.`, failure, {
      version: runtime.topology.version,
      requiredVersion: refusal.requiredVersion,
    });
  }
  try {
    return await statement.rerun();
  } catch (second) {
    const again = fenceRefusalOf(second);
    if (again === undefined) throw second;
    throw new StaleTopologyError(`A shard refused this statement again after the topology was reloaded (${again.kind}): nothing was written; retry later.`, second, {
      version: runtime.topology.version,
      requiredVersion: again.requiredVersion,
    });
  }
}

/**
 * Brings the sessions a connection holds to the runtime's (new) topology version before a refused
 * statement runs again. A connection whose clients carry no session state (the refused statement
 * was the first one sent on it, to one server, outside a transaction, not raw SQL:
 * `holdsSessionState` false) gives them all
 * back to their pools instead: the statement usually runs again on another shard, and a re-tag
 * would put one more round trip between the new version's arrival and the retry, while writers of
 * the moved slots wait.
 * Otherwise replica clients are dropped instead: they carry no session state
 * (session reads stay on primaries) and the next read checks out a client tagged under the read
 * deadline, so a frozen replica the connection happens to hold cannot hold up a statement that
 * does not read it. Primary clients, which may carry session state (`SET`, temp tables), are
 * re-tagged within `fenceWaitMillis` (at least {@link MIN_RETAG_MILLIS}); one that does not answer
 * fails the retry, naming its server, and is closed when the connection is released.
 */
export async function refreshHeldSessions(runtime: Pick<ShardedRuntime, 'topology' | 'fenceWaitMillis' | 'retag'>, clients: HeldClients, holdsSessionState: boolean): Promise<void> {
  if (!holdsSessionState) {
    clients.giveBackArrived();
    return;
  }
  const primaries = new Map(runtime.topology.shards.map((shard) => [shard.primary.url, shard]));
  clients.dropArrived((url) => !primaries.has(url));
  const millis = Math.max(runtime.fenceWaitMillis, MIN_RETAG_MILLIS);
  // Real time on purpose, as for the catch-up above.
  const retags = clients.arrived().map(({ url, client }) => {
    const shard = primaries.get(url)!;
    return withDeadline(runtime.retag(client), millis, `the primary of shard "${shard.id}" (${shard.primary.redactedUrl})`, { clock: systemClock });
  });
  try {
    await Promise.all(retags);
  } catch (error) {
    // A client whose re-tag may still be running must not go back to its pool.
    clients.discardOnRelease();
    throw error;
  }
}
