/**
 * A statement refused by a shard's fence (a slot moved, or is moving): the router's topology is
 * brought up to the version the shard asks for, from `topologySource`, and the statement runs once
 * more, routed by it. Inside a transaction, or without a source, or when the version does not come
 * in time, the caller gets {@link StaleTopologyError}: retryable, nothing was written.
 */
import { catchUpTopology } from '../../cluster/topology-catch-up';
import { fenceRefusalOf, StaleTopologyError } from '../../cluster/topology-fence';
import { systemClock } from '../../kernel/clock';
import type { ShardedRuntime } from './sharded-runtime';

/** What a connection hands {@link retryAfterRefusal}. */
export interface RefusedStatement<T> {
  readonly inTransaction: boolean;
  /** Re-tags the sessions this connection already holds (before the retry). */
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
  await statement.refreshSessions();
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
