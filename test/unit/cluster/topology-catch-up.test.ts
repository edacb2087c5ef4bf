import { catchUpTopology, MAX_POLL_MILLIS, topologyArrived } from '../../../src/cluster/topology-catch-up';
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

  /** A source that answers `answer()` and counts its reads; `settle` lets pending promises run. */
  const counting = (answer: () => Topology) => {
    const source = { reads: 0, latest: async () => (source.reads++, answer()) };
    return source;
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  test('reads the source after 2, 4, 8, 8 … ms while the version has not come (not every 2 ms)', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    const source = counting(() => v(1));
    let outcome: boolean | undefined;
    const pending = catchUpTopology(holder, source, 2, { waitMillis: 100, clock }).then((reached) => (outcome = reached));
    await settle();
    expect(source.reads).toBe(1);
    const readsAt: number[] = [];
    for (let t = 1; t <= 40; t++) {
      const before = source.reads;
      clock.advance(1);
      await settle();
      if (source.reads > before) readsAt.push(t);
    }
    expect(MAX_POLL_MILLIS).toBe(8);
    expect(readsAt).toEqual([2, 6, 14, 22, 30, 38]);
    clock.advance(100);
    await pending;
    expect(outcome).toBe(false);
  });

  test('a watch of the same source that applied the version wakes the waiting router at once, with no read of its own', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    const source = counting(() => v(1));
    let outcome: boolean | undefined;
    const pending = catchUpTopology(holder, source, 2, { waitMillis: 1000, clock }).then((reached) => (outcome = reached));
    await settle();
    expect(source.reads).toBe(1);
    holder.setTopology(v(2)); // as followCatalog does on the NOTIFY, then:
    topologyArrived({ latest: async () => undefined }); // another source wakes no one
    await settle();
    expect(outcome).toBeUndefined();
    topologyArrived(source);
    await pending;
    expect(outcome).toBe(true);
    expect(source.reads).toBe(1);
  });
  test('a router whose own read applied the version wakes the others waiting on the same source: they retry at once, not at their next read', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    let published = v(1);
    const source = counting(() => published);
    const outcomes: (boolean | undefined)[] = [undefined, undefined];
    const first = catchUpTopology(holder, source, 2, { waitMillis: 1000, clock }).then((reached) => (outcomes[0] = reached));
    await settle();
    clock.advance(1);
    const second = catchUpTopology(holder, source, 2, { waitMillis: 1000, clock }).then((reached) => (outcomes[1] = reached));
    await settle();
    expect(source.reads).toBe(2); // each read once; the second's next read is due at 3 ms
    published = v(2);
    clock.advance(1); // 2 ms: only the first one's read is due
    await settle();
    expect(source.reads).toBe(3);
    expect(outcomes).toEqual([true, true]);
    await Promise.all([first, second]);
  });
  test('a version applied elsewhere while this router\'s read was on its way (the read answers older) ends the wait at that answer, not at the next read', async () => {
    const clock = new ManualClock();
    const holder = { topology: v(1), setTopology(t: Topology) { this.topology = t; } };
    let answer: (t: Topology) => void = () => undefined;
    const source = { latest: () => new Promise<Topology>((resolve) => (answer = resolve)) };
    let outcome: boolean | undefined;
    const pending = catchUpTopology(holder, source, 2, { waitMillis: 1000, clock }).then((reached) => (outcome = reached));
    await settle();
    holder.setTopology(v(2)); // a watch, or another router's read
    topologyArrived(source); // finds no sleeper: this router is reading
    answer(v(1)); // read before the publish
    await settle();
    expect(outcome).toBe(true);
    await pending;
  });
});
