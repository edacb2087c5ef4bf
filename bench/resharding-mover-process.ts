/**
 * The mover of the resharding benchmark's move under load, in a process of its own as an
 * operator's `kysely-scale-admin move` runs (in the app's process its copy pipe and polling would
 * share the app's event loop). Reads its move from RESHARDING_MOVE (JSON: catalog, slots, to,
 * maxRowsPerSecond, tuning); prints `{"ready":true}` once loaded, starts when a line arrives on stdin (so its
 * start-up is not part of the measured move), then prints one JSON line per progress report and a
 * last line with the result (with RESHARDING_DEBUG, also a line per hook point with its time).
 */
import { createInterface } from 'node:readline';
import { moveSlots } from '../src/admin/mover/mover-operations';
import type { MoveTuning } from '../src/admin/mover/move-context';

interface MoveRequest {
  readonly catalog: string;
  readonly slots: string;
  readonly to: string;
  readonly maxRowsPerSecond: number;
  readonly tuning?: Partial<MoveTuning>;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.env.RESHARDING_MOVE ?? '') as MoveRequest;
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  await lines.next();
  // With RESHARDING_DEBUG: the time (ms since the epoch) of each hook point of the cutover (fence raised, older transactions ended, source switched).
  const hook = process.env.RESHARDING_DEBUG === undefined ? undefined : (_batch: unknown, point: string) => void process.stdout.write(`${JSON.stringify({ mark: point, at: performance.timeOrigin + performance.now() })}\n`);
  const result = await moveSlots({ ...request, ...(hook === undefined ? {} : { hook }), onProgress: (progress) => process.stdout.write(`${JSON.stringify({ progress })}\n`) });
  process.stdout.write(`${JSON.stringify({ result })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
