/**
 * Settling a topology publish whose outcome may be unknown, shared by a batch's cutover and a
 * drain's unsharded step. A publish of version `v` only commits while the catalog's latest version
 * is below `v`, so the version number settles it: latest < v → still open (a publish sent earlier
 * may commit yet); otherwise row `v` is read and its note (and, when it is the latest, whether it
 * records the change) says whether it is this change's: `published`, or `not-published` (and
 * never will be).
 */
import type { Topology } from '../../cluster/topology';
import type { MoveContext } from './move-context';
import { MoveFailedError } from './mover-errors';
import { isRecordChanged, type MoveStore } from './move-store';
import { PublishOutcomeUnknownError } from '../topology-catalog';
import { TopologyConflictError } from '../admin-errors';

/** A change's claim on a topology version: how its publish is recognized. */
export interface VersionClaim {
  readonly version: number;
  /** The note the version is published with. */
  readonly note: string;
  /** Whether `latest` (the catalog's latest topology, of exactly {@link version}) records the change. */
  holds(latest: Topology): boolean;
}

/** A stored record that remembers a publish whose outcome is not known yet (saved with the move). */
export interface PendingPublish {
  publishPending?: number;
}

/** How a failed publish names its change in the move's error, and what stays in place until the version is settled. */
export interface PublishSubject {
  /** `batch 2, slots 0-63 shard0 → shard1`. */
  readonly what: string;
  /** `both shards require version 7 (routers at older versions are refused, retryable)`. */
  readonly held: string;
  /** The error's context (the helper adds `version` and `outcomeUnknown`). */
  readonly context: Readonly<Record<string, unknown>>;
}

export type VersionState = 'published' | 'not-published' | 'open';

/** Whether the claimed version is published ({@link VersionState}), from the catalog's latest topology (`known`, or read now). */
export async function claimState(ctx: MoveContext, claim: VersionClaim, known?: Topology): Promise<VersionState> {
  const latest = known ?? (await ctx.topology());
  if (latest.version < claim.version) return 'open';
  const row = (await ctx.catalog.history(latest.version - claim.version + 1)).find((h) => h.version === claim.version);
  const ours = row?.note === claim.note && (latest.version !== claim.version || claim.holds(latest));
  return ours ? 'published' : 'not-published';
}

/**
 * Publishes `next` (of the claimed version) and says whether the version is the change's. Its
 * outcome decides what may follow. Committed: `published`. Taken ({@link TopologyConflictError}):
 * settled by {@link claimState}. Certainly not committed (the catalog's own error): thrown as it
 * is, {@link PendingPublish.publishPending} dropped, and the caller may revert, unless a publish of
 * the version sent earlier (`earlierPending`) is still unsettled: then a {@link MoveFailedError}
 * (outcomeUnknown). Unknown ({@link PublishOutcomeUnknownError}): the version is recorded pending
 * (saved if the catalog takes the write) and a {@link MoveFailedError} (outcomeUnknown) says to
 * resume or abort once the catalog answers: nothing may be reverted until the version is settled.
 * Refused because another command saved the move since (its claim: see
 * {@link MoveStore.publishPrecondition}): thrown as it is (`record-changed`), nothing reverted.
 */
export async function publishClaim(
  ctx: MoveContext,
  record: PendingPublish,
  claim: VersionClaim,
  next: Topology,
  subject: PublishSubject,
  earlierPending = record.publishPending !== undefined,
): Promise<'published' | 'not-published'> {
  const { version } = claim;
  const context = { ...subject.context, version, outcomeUnknown: true };
  try {
    await ctx.catalog.publish(next, claim.note, ctx.store.publishPrecondition(ctx.move));
    return 'published';
  } catch (error) {
    if (error instanceof PublishOutcomeUnknownError) {
      record.publishPending = version;
      await ctx.store.save(ctx.move).catch(() => undefined);
      throw new MoveFailedError(
        `The publish of topology version ${version} (${subject.what}) was not confirmed and the catalog could not tell whether it committed (${error.message}). ` +
          `Nothing was rolled back or cleaned up: ${subject.held} until it is settled. Resume (or abort) once the catalog answers: version ${version} is settled first.`,
        context,
        error,
      );
    }
    // Refused because another command took the move over (its claim came first): nothing of this
    // publish can commit; the move is that command's to settle, so nothing is reverted here either.
    if (isRecordChanged(error)) throw error;
    if (error instanceof TopologyConflictError) {
      const state = await claimState(ctx, claim);
      if (state !== 'open') return state;
    } else if (!earlierPending) {
      delete record.publishPending; // nothing of this version can commit any more: revert is safe
      throw error;
    }
    throw new MoveFailedError(
      `The publish of topology version ${version} (${subject.what}) failed, and an earlier publish of that version may still commit, so nothing is rolled back: ${subject.held}; resume (or abort) once the catalog answers: ${(error as Error | null)?.message ?? String(error)}`,
      context,
      error,
    );
  }
}
