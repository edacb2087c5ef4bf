/**
 * Spans and metrics of slot moves: a span per phase of each batch (move id and kind, batch,
 * source, target, slot count, the phase it entered), the phases' durations, and the progress of
 * the moves this process runs (batches per phase, rows copied and expected; read at each
 * collection).
 */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { DURATION_BUCKETS_SECONDS, defineMetric, telemetryTracer } from '../../kernel/telemetry';
import type { MoveBatch, MoveRecord } from './move-record';

const MOVE = 'kysely_scale.move.id';
const PHASE = 'kysely_scale.move.phase';

/** How long each phase of a batch took, by phase and outcome. */
const PHASE_DURATION = defineMetric({
  name: 'kysely_scale.move.phase.duration',
  prometheusName: 'kysely_scale_move_phase_duration_seconds',
  description: 'Duration of one phase of a slot-move batch, by phase and outcome.',
  unit: 's',
  kind: 'histogram',
  attributes: [PHASE, 'kysely_scale.outcome'],
  buckets: [...DURATION_BUCKETS_SECONDS, 30, 60, 300, 1800],
});

const running = new Set<MoveRecord>();

defineMetric({
  name: 'kysely_scale.move.batches',
  prometheusName: 'kysely_scale_move_batches',
  description: 'Batches of the slot moves this process runs, by the phase they reached.',
  unit: '{batch}',
  kind: 'gauge',
  attributes: [MOVE, PHASE],
}).observeWith((observe) => {
  for (const move of running) {
    const byPhase = new Map<string, number>();
    for (const b of move.batches) byPhase.set(b.phase, (byPhase.get(b.phase) ?? 0) + 1);
    for (const [phase, count] of byPhase) observe(count, { [MOVE]: move.id, [PHASE]: phase });
  }
});

/** A gauge of each running move's rows, summed over its batches. */
const rowsGauge = (name: string, prometheusName: string, description: string, rowsOf: (batch: MoveBatch) => number): void => {
  defineMetric({ name, prometheusName, description, unit: '{row}', kind: 'gauge', attributes: [MOVE] }).observeWith((observe) => {
    for (const move of running) observe(move.batches.reduce((sum, b) => sum + rowsOf(b), 0), { [MOVE]: move.id });
  });
};
rowsGauge('kysely_scale.move.rows.copied', 'kysely_scale_move_rows_copied', 'Rows the slot moves this process runs have copied so far.', (b) => b.rowsCopied ?? 0);
rowsGauge('kysely_scale.move.rows.expected', 'kysely_scale_move_rows_expected', 'Rows the slot moves this process runs expect to copy (their source shards\' rows measured when the moves were planned, times each batch\'s share of its source\'s slots).', (b) => b.rowsTotal ?? 0);

/** Reports `move`'s batches while `run` runs. */
export async function observeMove<T>(move: MoveRecord, run: () => Promise<T>): Promise<T> {
  running.add(move);
  try {
    return await run();
  } finally {
    running.delete(move);
  }
}

/** Runs one phase step of `batch` in a span, and measures it. */
export async function observePhase<T>(move: MoveRecord, batch: MoveBatch, run: () => Promise<T>): Promise<T> {
  const phase = batch.phase;
  const span = telemetryTracer().startSpan(`move ${phase}`, { kind: SpanKind.INTERNAL });
  if (span.isRecording()) {
    span.setAttributes({ [MOVE]: move.id, 'kysely_scale.move.kind': move.kind, 'kysely_scale.move.batch': batch.index, 'kysely_scale.move.source': batch.source, 'kysely_scale.move.target': batch.target, 'kysely_scale.move.slots': batch.slots.length, [PHASE]: phase });
  }
  const started = performance.now();
  let outcome = 'error';
  try {
    const value = await run();
    outcome = 'ok';
    return value;
  } catch (error) {
    if (span.isRecording()) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    throw error;
  } finally {
    if (PHASE_DURATION.enabled) PHASE_DURATION.record((performance.now() - started) / 1000, { [PHASE]: phase, 'kysely_scale.outcome': outcome });
    span.end();
  }
}
