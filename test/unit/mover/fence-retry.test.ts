import { retryOnFence } from '../../../src/admin/mover/fence-retry';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { StaleTopologyError, SLOT_FENCED_SQLSTATE } from '../../../src/cluster/topology-fence';
import { ErrorCodes } from '../../../src/kernel/errors';
import { ManualClock } from '../../../src/kernel/clock';

const v = (version: number): Topology => createTopology({ shards: [{ id: 's0', primary: 'postgres://u@h/db' }], version });

/** A follower (as a dialect is) and a catalog whose latest version a test sets. */
function setup(start: number) {
  const follower = { topology: v(start), setTopology(t: Topology) { this.topology = t; } };
  const catalog = { published: v(start), latest: async () => catalog.published };
  return { follower, catalog };
}

const fenced = (required: number) => Object.assign(new Error('fenced'), { code: SLOT_FENCED_SQLSTATE, detail: JSON.stringify({ slot: 3, required }) });

describe('retryOnFence', () => {
  test('on a fence refusal it waits for the version the refusal names, then runs the call once more', async () => {
    const clock = new ManualClock();
    const { follower, catalog } = setup(1);
    let calls = 0;
    const pending = retryOnFence(follower, catalog, async () => {
      calls++;
      if (follower.topology.version < 2) throw fenced(2);
      return 'ok';
    }, { clock, pollMillis: 2 });
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(2);
    }
    expect(calls).toBe(1);
    catalog.published = v(2);
    for (let i = 0; i < 5 && calls < 2; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(2);
    }
    await expect(pending).resolves.toBe('ok');
    expect(follower.topology.version).toBe(2);
    expect(calls).toBe(2);
  });

  test('gives a retryable coded error when the version is not published in time; other errors pass unchanged', async () => {
    const clock = new ManualClock();
    const { follower, catalog } = setup(1);
    const outcome = retryOnFence(follower, catalog, async () => Promise.reject(fenced(5)), { clock, waitMillis: 10, pollMillis: 2 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setImmediate(r));
      clock.advance(2);
    }
    const error = await outcome;
    expect(error).toBeInstanceOf(StaleTopologyError);
    expect(error).toMatchObject({ code: ErrorCodes.STALE_TOPOLOGY, retryable: true, context: { requiredVersion: 5 } });
    const other = Object.assign(new Error('duplicate key'), { code: '23505' });
    await expect(retryOnFence(follower, catalog, async () => Promise.reject(other), { clock })).rejects.toBe(other);
  });
});
