/**
 * What a router does when a shard refuses it for a slot move: bring its topology up to the
 * version the refusal names (from the catalog), then run the statement (or transaction) once
 * more, now routed to the new owner. If the catalog does not reach that version in time, the
 * caller gets {@link StaleTopologyError}: retryable, and nothing was written.
 *
 * Until the dialect does this by itself, wrap calls: `retryOnFence(dialect, catalog, () => db…)`.
 */
import type { Clock } from '../../kernel/clock';
import { catchUpTopology } from '../../cluster/topology-catch-up';
import { fenceRefusalOf, StaleTopologyError } from '../../cluster/topology-fence';
import type { TopologyCatalog } from '../topology-catalog';
import type { TopologyFollower } from '../follow-catalog';

/** Options of {@link retryOnFence}. */
export interface FenceRetryOptions {
  /** How long to wait for the catalog to publish the version a refusal asks for. @default 5000 */
  readonly waitMillis?: number;
  /** Between catalog reads while waiting. @default 2 */
  readonly pollMillis?: number;
  /** @default systemClock */
  readonly clock?: Clock;
}

/** Runs `fn`; on a fence refusal, catches the dialect up with the catalog and runs it once more. */
export async function retryOnFence<T>(dialect: TopologyFollower, catalog: Pick<TopologyCatalog, 'latest'>, fn: () => Promise<T>, options: FenceRetryOptions = {}): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    // A refusal as the shard sent it, or inside the dialect's StaleTopologyError (a refused transaction).
    const refusal = fenceRefusalOf(error) ?? fenceRefusalOf((error as { cause?: unknown } | null)?.cause);
    if (refusal === undefined) throw error;
    const reached = await catchUpTopology(dialect, catalog, refusal.requiredVersion ?? dialect.topology.version + 1, options);
    if (!reached) {
      throw new StaleTopologyError(
        `A shard refused this statement for a slot move (${refusal.kind}) and the catalog did not reach topology version ${refusal.requiredVersion ?? '(newer)'} within ${options.waitMillis ?? 5000} ms; nothing was written: retry later.`,
        error,
        { version: dialect.topology.version, requiredVersion: refusal.requiredVersion },
      );
    }
    try {
      return await fn();
    } catch (second) {
      const again = fenceRefusalOf(second) ?? fenceRefusalOf((second as { cause?: unknown } | null)?.cause);
      if (again === undefined) throw second;
      throw new StaleTopologyError(`A shard refused this statement again after the topology was reloaded (${again.kind}); nothing was written: retry later.`, second, {
        version: dialect.topology.version,
        requiredVersion: again.requiredVersion,
      });
    }
  }
}
