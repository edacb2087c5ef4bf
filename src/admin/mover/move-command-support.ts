/** What the move commands of the CLI share: their flags, turning flags into mover options, and the result text. */
import { CliUsageError, integerFlag, plural, stringFlag, stringsFlag, type CliContext, type CliOutcome, type CliValues } from '../cli/cli-command';
import type { MoverOptions } from './mover-session';
import type { MoveResult } from './move-result';
import { progressPrinter } from './progress-printer';
import { slotRangesSyntaxProblem } from './slot-ranges';

/** Flags of add, drain, move, rebalance, resume and abort. */
export const MOVE_FLAGS = {
  table: { type: 'string', multiple: true },
  'dry-run': { type: 'boolean' },
  'max-rows-per-second': { type: 'string' },
  'batch-slots': { type: 'string' },
  'fence-timeout-ms': { type: 'string' },
  'nice-ratio': { type: 'string' },
  'probe-slow-ms': { type: 'string' },
} as const;

/** Usage lines of {@link MOVE_FLAGS}. */
export const MOVE_USAGE: readonly string[] = [
  '--table name=keyColumn                 a sharded table (once each; remembered in the catalog)',
  '--dry-run                              print the plan (slots, rows, estimated time), change nothing',
  '--max-rows-per-second <n>              throttle the copy and the clean-up',
  '--batch-slots <n>                      largest batch (default 1024 slots)',
  '--fence-timeout-ms <n>                 a fence left up longer lifts itself (default 15000)',
  '--nice-ratio <r>                       pause r times as long as each slice of work took (default 1; 0 = no pauses)',
  '--probe-slow-ms <n>                    wait longer while select 1 on the shards takes more than this (default 3; 0 = no probe)',
];

/** Mover options from flags; progress goes to the context's progress stream. */
export function moverOptions(values: CliValues, context: CliContext): { options: MoverOptions; stop: () => void } {
  const tables: Record<string, string> = {};
  for (const text of stringsFlag(values, 'table')) {
    const eq = text.indexOf('=');
    if (eq <= 0 || eq === text.length - 1) throw new CliUsageError(`--table takes name=keyColumn; got ${JSON.stringify(text)}.`);
    tables[text.slice(0, eq)] = text.slice(eq + 1);
  }
  const max = integerFlag(values, 'max-rows-per-second', 1);
  const batchSlots = integerFlag(values, 'batch-slots', 1);
  const fence = integerFlag(values, 'fence-timeout-ms', 100);
  const nice = numberFlag(values, 'nice-ratio');
  const probeSlow = integerFlag(values, 'probe-slow-ms', 0);
  const printer = progressPrinter(context.progress);
  return {
    options: {
      catalog: context.catalog!,
      ...(Object.keys(tables).length > 0 ? { tables } : {}),
      dryRun: values['dry-run'] === true,
      ...(max === undefined ? {} : { maxRowsPerSecond: max }),
      tuning: { ...(batchSlots === undefined ? {} : { batchSlots }), ...(fence === undefined ? {} : { fenceTimeoutMillis: fence }), ...(nice === undefined ? {} : { niceRatio: nice }), ...(probeSlow === undefined ? {} : { probeSlowMillis: probeSlow }) },
      onProgress: printer.onProgress,
    },
    stop: () => printer.stop(),
  };
}

/** A flag holding a number ≥ 0 (a ratio such as `--nice-ratio 0.5`). */
function numberFlag(values: CliValues, name: string): number | undefined {
  const text = stringFlag(values, name);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0) throw new CliUsageError(`--${name} takes a number ≥ 0; got ${JSON.stringify(text)}.`);
  return n;
}

/** A required string flag. */
export function requiredFlag(values: CliValues, name: string, command: string): string {
  const v = stringFlag(values, name);
  if (v === undefined || v === '') throw new CliUsageError(`${command} needs --${name}.`);
  return v;
}

/** `--slots`, checked for shape (a usage error naming the bad part); whether the slots exist is the cluster's to say. */
export function slotsFlag(values: CliValues): string | undefined {
  const text = stringFlag(values, 'slots');
  if (text === undefined) return undefined;
  const problem = slotRangesSyntaxProblem(text);
  if (problem !== undefined) throw new CliUsageError(`--slots: ${problem}`);
  return text;
}

/** The CLI outcome of a move result. */
export function moveOutcome(result: MoveResult): CliOutcome {
  return { result, text: moveText(result), exitCode: result.ok ? 0 : 1 };
}

/** "versions 26 published (24, 25 by the interrupted run)": only this run's versions are credited to it. */
function publishedText(r: MoveResult): string {
  const own = r.versions.length === 0 ? 'no version published' : `${r.versions.length === 1 ? 'version' : 'versions'} ${r.versions.join(', ')} published`;
  const earlier = r.earlierVersions ?? [];
  return earlier.length === 0 ? own : `${own} (${earlier.join(', ')} by the interrupted run)`;
}

function moveText(r: MoveResult): string {
  const lines: string[] = [];
  if (r.nothingToMove !== undefined) return `${r.operation}: ${r.nothingToMove}${r.dryRun ? ' Dry run: nothing changed.' : ''}`;
  if (r.plan !== null) {
    lines.push(`Plan: ${plural(r.plan.batches.length, 'batch', 'batches')}, ${plural(r.plan.slots, 'slot')}, ~${plural(r.plan.estimatedRows, 'row')}, estimated ~${r.plan.estimatedSeconds} s (an estimate: the servers' load changes it)`);
    for (const b of r.plan.batches) lines.push(`  ${b.source} → ${b.target}  slots ${b.slots} (${b.slotCount})  ~${plural(b.estimatedRows, 'row')}`);
    const u = r.plan.unsharded;
    if (u !== undefined) {
      lines.push(`  then the unsharded tables ${u.source} → ${u.target} (writes to them fenced while they copy): ${u.tables.length === 0 ? 'none' : u.tables.map((t) => `${t.name} (${plural(t.rows, 'row')})`).join(', ')}`);
    }
    if (r.plan.removeShard !== undefined) lines.push(`  then remove ${r.plan.removeShard}`);
    if (r.plan.migrationsPending !== undefined) lines.push(`  first the migrations on ${r.plan.migrationsPending} (not run by the dry run; its schema is compared with the others' after them)`);
  }
  if (r.dryRun && r.ok) lines.push('Dry run: nothing changed.');
  else if (r.ok) lines.push(`${r.operation} ${r.moveId === null ? '' : `(move ${r.moveId}) `}${r.status}: ${plural(r.rowsCopied, 'row')} copied, ${publishedText(r)}, ${Math.round(r.durationMillis)} ms.${r.rolledBack === undefined ? '' : ` Rolled back ${plural(r.rolledBack, 'batch', 'batches')}, finished ${r.completed ?? 0} already published.`}`);
  if (r.unsharded !== undefined && !r.dryRun) {
    const u = r.unsharded;
    lines.push(`Unsharded tables ${u.source} → ${u.target}: ${u.phase}, ${plural(u.rowsCopied, 'row')} copied${u.fenceMillis === null ? '' : `, writes to them fenced ${u.fenceMillis} ms`}${u.version === null || !u.holderMoved ? '' : `, holder recorded in version ${u.version}`}.`);
    if (r.operation === 'abort' && u.holderMoved) lines.push(`The unsharded tables had already moved to ${u.target} (the new holder was published), so abort finished that step instead of rolling it back: ${u.target} holds them now.`);
  }
  if (r.error !== null) {
    lines.push(`${r.error.code}: ${r.error.message}`);
    if (r.status === 'open') lines.push('The move is open: run `resume` to finish it or `abort` to roll it back.');
  }
  return lines.join('\n');
}
