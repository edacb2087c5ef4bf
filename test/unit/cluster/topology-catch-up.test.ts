import { catchUpTopology } from '../../../src/cluster/topology-catch-up';
import { createTopology, type Topology } from '../../../src/cluster/topology';
import { ManualClock } from '../../../src/kernel/clock';

const v = (version: number): Topology => createTopology({ shards: [{ id: 's0', primary: 'postgres://u@h/db' }], version });

describe('catchUpTopology', () => {
  test('a topology source that never answers does not hold the caller past its deadline', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    const hung = { latest: () => new Promise<Topology | undefined>(() => undefined) };
    let outcome: boolean | undefined;
    const pending = catchUpTopology(holder, hung, 2, { waitMillis: 1000, clock }).then((reached) => (outcome = reached));
    await new Promise((r) => setImmediate(r));
    clock.advance(999);
    await new Promise((r) => setImmediate(r));
    expect(outcome).toBeUndefined();
    clock.advance(1);
    await pending;
    expect(outcome).toBe(false);
    expect(holder.topology.version).toBe(1);
  });

  test('a source that answers brings the holder to the version asked for', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    expect(await catchUpTopology(holder, { latest: async () => v(3) }, 2, { waitMillis: 1000, clock })).toBe(true);
    expect(holder.topology.version).toBe(3);
  });
});
