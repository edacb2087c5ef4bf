/** The text form of a {@link LiveStatus}: one line per shard, one per server, then moves in progress and problems. */
import type { LiveStatus, ServerHealth } from '../live-status';
import { plural } from './cli-command';
import { unshardedLine } from '../mover/move-result';

export function formatLiveStatus(status: LiveStatus): string {
  const lines = [`Live (checked ${status.checkedAt}):`];
  if (status.error !== null) lines.push(`  catalog unreadable: ${status.error}`);
  for (const shard of status.shards) {
    const rows = shard.rowEstimate === null ? 'rows unknown' : `~${shard.rowEstimate} rows${shard.rowEstimateSource === 'statistics' ? ' (statistics)' : ''}`;
    lines.push(`  ${shard.id}  ${plural(shard.slots, 'slot')} (${shard.slotRanges === '' ? 'none' : shard.slotRanges})  ${rows}${shard.migration === null ? '' : `  migration ${shard.migration}`}`);
    for (const server of shard.servers) lines.push(`    ${server.role.padEnd(7)}  ${server.server}  ${serverState(server)}`);
  }
  if (status.moves.length > 0) {
    lines.push('Moves in progress:');
    for (const m of status.moves) {
      const done = m.batches.filter((b) => b.phase === 'cleaned').length;
      lines.push(`  move ${m.id}  ${m.kind}  ${done}/${plural(m.batches.length, 'batch', 'batches')} done`);
      for (const b of m.batches) lines.push(`    ${b.source} → ${b.target}  slots ${b.slots}  ${b.phase}  ${plural(b.rowsCopied, 'row')} copied${leftText(b.left)}`);
      if (m.unsharded !== undefined) lines.push(`    ${unshardedLine(m.unsharded)}${leftText(m.unsharded.left)}`);
    }
  }
  if (status.problems.length > 0) {
    lines.push('Problems:');
    for (const p of status.problems) lines.push(`  ${p}`);
  }
  return lines.join('\n');
}

/** What an abort left of a batch (or of the unsharded step) on shards that did not answer, as its line (`status`, `moves`) ends with it. */
export function leftText(left: readonly string[] | undefined): string {
  return left === undefined ? '' : `  abort unfinished: state left on ${left.join(', ')} (run abort again once ${left.length === 1 ? 'it answers' : 'they answer'})`;
}

function serverState(s: ServerHealth): string {
  if (!s.reachable) return `UNREACHABLE (${s.error ?? 'no answer'})`;
  const role = s.roleMatches === false ? `  ROLE MISMATCH: ${s.inRecovery === true ? 'in recovery' : 'not in recovery'}` : '';
  const lag = s.role === 'replica' ? `  lag ${s.lagBytes === null ? '?' : `${s.lagBytes} B`} / ${s.lagSeconds === null ? '?' : `${s.lagSeconds.toFixed(1)} s`}` : '';
  return `up  ${s.latencyMillis} ms${lag}${role}`;
}
