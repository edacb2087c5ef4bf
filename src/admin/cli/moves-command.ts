import { moveHistory } from '../mover/move-control';
import { unshardedLine } from '../mover/move-result';
import { integerFlag, plural, type CliCommand } from './cli-command';
import { leftText } from './live-status-text';

/** `moves`: moves in progress and past ones. */
export const movesCommand: CliCommand = {
  summary: 'slot moves in progress and past ones, with each batch\'s phase (and a drain\'s unsharded step)',
  usage: ['--history <n>                          moves to list (default 10)'],
  options: { history: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const result = await moveHistory({ catalog: context.catalog!, limit: integerFlag(values, 'history', 1, 10) });
    if (result.error !== null) return { result, text: `${result.error.code}: ${result.error.message}`, exitCode: 1 };
    const lines = result.moves.length === 0 ? ['No moves yet.'] : [];
    for (const m of result.moves) {
      lines.push(`move ${m.id}  ${m.kind}  ${m.status}  ${m.createdAt.toISOString()}${m.error === null ? '' : `  last error: ${m.error}`}`);
      for (const b of m.batches) lines.push(`  ${b.source} → ${b.target}  slots ${b.slots}  ${b.phase}${b.version === null ? '' : `  v${b.version}`}  ${plural(b.rowsCopied, 'row')}${leftText(b.left)}`);
      if (m.unsharded !== undefined) lines.push(`  ${unshardedLine(m.unsharded)}${leftText(m.unsharded.left)}`);
    }
    return { result, text: lines.join('\n'), exitCode: 0 };
  },
};
