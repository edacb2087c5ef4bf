/**
 * The stream half of a replica's proof: beyond carrying the shard's identity, a standby must be
 * streaming its listed primary's timeline, or have been seen doing so on the shard's current one.
 */
import type { ReplicaMember } from './replica-member';
import type { ServerFacts } from './server-check';

/**
 * Whether `member` (same identity as the primary) streams from this primary now: its WAL receiver
 * must stream the primary's timeline (an older one follows a demoted primary; a newer one, a
 * promoted copy of the shard). Without a receiver (its upstream is gone) it stays proven only while
 * the shard's timeline is the one it was last seen streaming on: once the shard moved to another
 * timeline it may hold WAL the new primary never had.
 */
export function streamProofProblem(member: ReplicaMember, facts: ServerFacts, timeline: number | null, primaryRedactedUrl: string): { text: string; refuse: boolean } | null {
  if (timeline === null) return null;
  const received = facts.receivedTimeline;
  if (facts.receiving) {
    if (received !== null && received < timeline) return { refuse: true, text: `streams timeline ${received}, older than its primary's timeline ${timeline}: it follows a demoted primary` };
    if (received !== null && received > timeline) {
      return { refuse: true, text: `streams timeline ${received}, newer than its primary's timeline ${timeline} while that primary answers: it follows a promoted copy of the shard, not its primary ${primaryRedactedUrl}` };
    }
    // A role without pg_read_all_stats sees the receiver but not its timeline: the replica set's position check still applies.
    member.streamedTimeline = timeline;
    return null;
  }
  if (member.streamedTimeline === timeline) return null; // its upstream is away (the primary down or restarting): lag bounds in time apply
  const seen = member.streamedTimeline === null ? 'was never seen streaming' : `was last seen streaming on timeline ${member.streamedTimeline}`;
  return { refuse: false, text: `has no WAL receiver (it streams from no primary) and ${seen} on its primary's timeline ${timeline}: it may hold WAL its primary never had, so it is not proven` };
}
