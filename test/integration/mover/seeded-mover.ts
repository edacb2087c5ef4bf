/**
 * The set-up many mover tests share: a fixture of two shards (with the unsharded `notes` when
 * asked), version 1 published over both, users seeded, and a pool on the catalog database (the
 * takeover tests end the operator lock's session through it, `lock-takeover.ts`).
 */
import { startMoverFixture, type MoverFixture } from './mover-fixture';
import { startUnshardedFixture } from './unsharded-fixture';
import { directPool } from '../../support/direct-pool';

/** What {@link startSeededMover} started. */
export interface SeededMover {
  readonly f: MoverFixture;
  readonly catalogPool: ReturnType<typeof directPool>;
}

/** Options of {@link startSeededMover}. */
export interface SeededMoverOptions {
  readonly slotCount: number;
  /** Users `0..users-1` are seeded, two orders each. */
  readonly users: number;
  /** Connections of the catalog pool. */
  readonly catalogConnections: number;
  /** The shards also hold `notes`, the first one its shared rows (`unsharded-fixture.ts`). */
  readonly unsharded?: boolean;
}

/** Starts the fixture named `name` (databases of that name), publishes version 1 over its two shards, seeds users, and opens the catalog pool. */
export async function startSeededMover(name: string, options: SeededMoverOptions): Promise<SeededMover> {
  const f = await (options.unsharded === true ? startUnshardedFixture : startMoverFixture)(name, 2);
  try {
    const v1 = await f.init(2, options.slotCount);
    await f.seed(v1, 0, options.users);
  } catch (error) {
    await f.close();
    throw error;
  }
  return { f, catalogPool: directPool({ connectionString: f.catalogUrl, max: options.catalogConnections }) };
}

/** Ends what {@link startSeededMover} started; either part may be missing (a set-up that failed). */
export async function closeSeededMover(started: Partial<SeededMover>): Promise<void> {
  await started.catalogPool?.end();
  await started.f?.close();
}
