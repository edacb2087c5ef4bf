/** What the move commands of the CLI share: their flags, running the operation (plan first, then progress, then the result), and the result text. */
import { CliUsageError, integerFlag, plural, stringFlag, stringsFlag, type CliContext, type CliOutcome, type CliValues } from '../cli/cli-command';
import { redactText } from '../../kernel/redact';
import type { MoverOptions } from './mover-session';
import type { MovePlanSummary, MoveResult } from './move-result';
import { progressPrinter } from './progress-printer';
import { slotRangesSyntaxProblem } from './slot-ranges';

/** Flags of the client-side deadlines on shards (the move commands and verify). */
export const DEADLINE_FLAGS = {
  'statement-timeout-ms': { type: 'string' },
  'copy-idle-timeout-ms': { type: 'string' },
} as const;

/** Usage lines of {@link DEADLINE_FLAGS}. */
export const DEADLINE_USAGE: readonly string[] = [
  '--statement-timeout-ms <n>             a statement without an answer this long has its shard probed: silent, the command stops; at work, it goes on (default 30000)',
  '--copy-idle-timeout-ms <n>             the same for a COPY during which a shard sends or takes nothing this long (default 60000)',
];

/** The tuning {@link DEADLINE_FLAGS} give. */
export function deadlineTuning(values: CliValues): { statementTimeoutMillis?: number; copyIdleTimeoutMillis?: number } {
  const statement = integerFlag(values, 'statement-timeout-ms', 1);
  const copyIdle = integerFlag(values, 'copy-idle-timeout-ms', 1);
  return { ...(statement === undefined ? {} : { statementTimeoutMillis: statement }), ...(copyIdle === undefined ? {} : { copyIdleTimeoutMillis: copyIdle }) };
}

/** Flags of add, drain, move, rebalance, resume and abort. */
export const MOVE_FLAGS = {
  table: { type: 'string', multiple: true },
  'dry-run': { type: 'boolean' },
  'max-rows-per-second': { type: 'string' },
  'batch-slots': { type: 'string' },
  'fence-timeout-ms': { type: 'string' },
  'nice-ratio': { type: 'string' },
  'probe-slow-ms': { type: 'string' },
  'lock-heartbeat-ms': { type: 'string' },
  ...DEADLINE_FLAGS,
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
  '--lock-heartbeat-ms <n>                check the operator lock\'s catalog session this often; a lock lost unnoticed stops the command at its next step (default 2000)',
  ...DEADLINE_USAGE,
];

/**
 * Runs a move operation for a CLI command: its plan is printed as soon as it is made (text on
 * stdout, or with `--json` the first JSON line on stderr: `{"type":"plan","plan":{…}}`), then its
 * progress on stderr, then its result; the result's text leaves out the plan printed before it.
 */
export async function runMoveCommand(values: CliValues, context: CliContext, operation: (options: MoverOptions) => Promise<MoveResult>): Promise<CliOutcome> {
  const printer = progressPrinter(context.progress);
  let planPrinted = false;
  const onPlan = (plan: MovePlanSummary): void => {
    planPrinted = true;
    if (context.json) context.progress.write(`${JSON.stringify({ type: 'plan', plan })}\n`);
    else context.output.write(`${redactText(planLines(plan).join('\n'))}\n`);
  };
  try {
    const result = await operation({ ...moverOptions(values, context.catalog!), onPlan, onProgress: printer.onProgress });
    return moveOutcome(result, { planPrinted });
  } finally {
    printer.stop();
  }
}

/** Mover options from flags (without the callbacks). */
function moverOptions(values: CliValues, catalog: string): MoverOptions {
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
  const heartbeat = integerFlag(values, 'lock-heartbeat-ms', 1);
  return {
    catalog,
    ...(Object.keys(tables).length > 0 ? { tables } : {}),
    dryRun: values['dry-run'] === true,
    ...(max === undefined ? {} : { maxRowsPerSecond: max }),
    tuning: { ...deadlineTuning(values), ...(batchSlots === undefined ? {} : { batchSlots }), ...(fence === undefined ? {} : { fenceTimeoutMillis: fence }), ...(nice === undefined ? {} : { niceRatio: nice }), ...(probeSlow === undefined ? {} : { probeSlowMillis: probeSlow }), ...(heartbeat === undefined ? {} : { lockHeartbeatMillis: heartbeat }) },
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

/** The CLI outcome of a move result; `planPrinted`: its plan was printed already (by {@link runMoveCommand}), so its text leaves it out. */
export function moveOutcome(result: MoveResult, { planPrinted = false }: { readonly planPrinted?: boolean } = {}): CliOutcome {
  return { result, text: moveText(result, planPrinted), exitCode: result.ok ? 0 : 1 };
}

/** The plan as text: a line of totals, a line per batch, then what follows the batches. */
export function planLines(plan: MovePlanSummary): string[] {
  const lines = [`Plan: ${plural(plan.batches.length, 'batch', 'batches')}, ${plural(plan.slots, 'slot')}, ~${plural(plan.estimatedRows, 'row')}, estimated ~${plan.estimatedSeconds} s (an estimate: the servers' load changes it)`];
  for (const b of plan.batches) lines.push(`  ${b.source} → ${b.target}  slots ${b.slots} (${b.slotCount})  ~${plural(b.estimatedRows, 'row')}`);
  const u = plan.unsharded;
  if (u !== undefined) {
    lines.push(`  then the unsharded tables ${u.source} → ${u.target} (writes to them fenced while they copy): ${u.tables.length === 0 ? 'none' : u.tables.map((t) => `${t.name} (${plural(t.rows, 'row')})`).join(', ')}`);
  }
  if (plan.removeShard !== undefined) lines.push(`  then remove ${plan.removeShard}`);
  if (plan.migrationsPending !== undefined) lines.push(`  first the migrations on ${plan.migrationsPending} (not run by the dry run; its schema is compared with the others' after them)`);
  return lines;
}

/** "versions 26 published (24, 25 by the interrupted run)": only this run's versions are credited to it. */
function publishedText(r: MoveResult): string {
  const own = r.versions.length === 0 ? 'no version published' : `${r.versions.length === 1 ? 'version' : 'versions'} ${r.versions.join(', ')} published`;
  const earlier = r.earlierVersions ?? [];
  return earlier.length === 0 ? own : `${own} (${earlier.join(', ')} by the interrupted run)`;
}

/** "120 rows copied", or for a resume or abort (or a run that copied a table twice) "120 rows copied by this run (480 by the move in all)". */
function copiedText(r: MoveResult): string {
  const own = `${plural(r.rowsCopied, 'row')} copied`;
  return r.operation === 'resume' || r.operation === 'abort' || r.rowsCopied !== r.moveRowsCopied ? `${own} by this run (${r.moveRowsCopied} by the move in all)` : own;
}

function moveText(r: MoveResult, planPrinted: boolean): string {
  const lines: string[] = [];
  if (r.nothingToMove !== undefined) return `${r.operation}: ${r.nothingToMove}${r.dryRun ? ' Dry run: nothing changed.' : ''}`;
  if (r.plan !== null && !planPrinted) lines.push(...planLines(r.plan));
  if (r.dryRun && r.ok) lines.push('Dry run: nothing changed.');
  else if (r.ok) lines.push(`${r.operation} ${r.moveId === null ? '' : `(move ${r.moveId}) `}${r.status}: ${copiedText(r)}, ${publishedText(r)}, ${Math.round(r.durationMillis)} ms.${r.rolledBack === undefined ? '' : ` Rolled back ${plural(r.rolledBack, 'batch', 'batches')}, finished ${r.completed ?? 0} already published.`}`);
  if (r.unsharded !== undefined && !r.dryRun) {
    const u = r.unsharded;
    lines.push(`Unsharded tables ${u.source} → ${u.target}: ${u.phase}, ${plural(u.rowsCopied, 'row')} copied${u.fenceMillis === null ? '' : `, writes to them fenced ${u.fenceMillis} ms`}${u.version === null || !u.holderMoved ? '' : `, holder recorded in version ${u.version}`}.`);
    if (r.operation === 'abort' && u.holderMoved) lines.push(`The unsharded tables had already moved to ${u.target} (the new holder was published), so abort finished that step instead of rolling it back: ${u.target} holds them now.`);
  }
  if (r.error !== null) {
    lines.push(`${r.error.code}: ${r.error.message}`);
    if (r.error.context.reason === 'abort-unfinished') {
      const done = r.operation === 'abort' ? `Rolled back ${plural(r.rolledBack ?? 0, 'batch', 'batches')}, finished ${r.completed ?? 0} already published; the rest waits for the shards named. ` : '';
      lines.push(`${done}The move is open: run \`abort\` again${r.operation === 'abort' ? ' once they answer' : ''} to finish rolling it back (\`resume\` is refused).`);
    } else if (r.status === 'open') lines.push('The move is open: run `resume` to finish it or `abort` to roll it back.');
  }
  return lines.join('\n');
}
