import { Balancer, consistentHash } from '../../../../src/balancer';
import { HashRing } from '../../../../src/kernel/hash-ring';
import { fake, list, type FakeInstance } from '../fake-instance';

describe('consistentHash', () => {
  const five = (): FakeInstance[] => ['a', 'b', 'c', 'd', 'e'].map((id) => fake(id));

  it('sends a key to the same instance every time', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const c = list(...five());
    const first = s.pick(c, { key: 'user-42' }).id;
    for (let i = 0; i < 10; i++) expect(s.pick(c, { key: 'user-42' }).id).toBe(first);
  });

  it('places keys on the kernel hash ring (one ring for the cache and the balancer)', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const ring = new HashRing(['a', 'b', 'c', 'd', 'e']);
    const c = list(...five());
    for (let i = 0; i < 200; i++) expect(s.pick(c, { key: `user-${i}` }).id).toBe(ring.owner(`user-${i}`));
  });

  it('gives a weight-3 instance about three times the keys of a weight-1 one', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const c = list(fake('heavy', { weight: 3 }), fake('light'));
    let heavy = 0;
    for (let i = 0; i < 4000; i++) if (s.pick(c, { key: `k${i}` }).id === 'heavy') heavy++;
    expect(heavy / 4000).toBeGreaterThan(0.68);
    expect(heavy / 4000).toBeLessThan(0.82);
  });

  it('moves only the keys of a removed instance', () => {
    const s = consistentHash({ loadFactor: Infinity });
    const all = five();
    const before = new Map(Array.from({ length: 1000 }, (_, i) => [`k${i}`, s.pick(list(...all), { key: `k${i}` }).id]));
    const without = all.filter((i) => i.id !== 'c');
    let moved = 0;
    for (const [key, id] of before) {
      const after = s.pick(list(...without), { key }).id;
      if (id === 'c') expect(after).not.toBe('c');
      else if (after !== id) moved++;
    }
    expect(moved).toBe(0);
    const shareOfC = [...before.values()].filter((id) => id === 'c').length / 1000;
    expect(shareOfC).toBeGreaterThan(0.1);
    expect(shareOfC).toBeLessThan(0.3);
  });

  it('spills a hot key to the next instance when its owner is at the bound', () => {
    const s = consistentHash({ loadFactor: 1.25 });
    const all = five();
    const owner = s.pick(list(...all), { key: 'hot' }) as FakeInstance;
    // total in flight 4 → bound ceil(1.25 × 5 / 5) = 2
    owner.inflight = 2;
    const other = all.find((i) => i !== owner) as FakeInstance;
    other.inflight = 2;
    const next = s.pick(list(...all), { key: 'hot' });
    expect(next.id).not.toBe(owner.id);
    expect(next.inflight).toBeLessThan(2);
  });

  it('refuses a load factor below 1 and invalid options, naming them', () => {
    expect(() => consistentHash({ loadFactor: 0.5 })).toThrow(/loadFactor/);
    expect(() => consistentHash({ loadFactor: Number.NaN })).toThrow(/loadFactor/);
    expect(() => consistentHash({ virtualNodesPerWeight: Number.NaN })).toThrow(/virtualNodesPerWeight/);
  });

  it('through the balancer, no instance exceeds ceil(c × (total + 1) / n) however hot the key', () => {
    const b = new Balancer({
      strategy: consistentHash({ loadFactor: 1.25 }),
      slowStart: false,
      instances: ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, address: id })),
    });
    for (let total = 0; total < 200; total++) {
      const bound = Math.ceil((1.25 * (total + 1)) / 5);
      const lease = b.acquire({ key: 'the-hot-key' });
      expect(lease.instance.inflight).toBeLessThanOrEqual(bound);
    }
    const loads = b.stats().instances.map((i) => i.inflight);
    expect(Math.max(...loads)).toBeLessThanOrEqual(Math.ceil((1.25 * 200) / 5));
  });

  it('follows weight in the bound: a weight-3 instance may take three times the calls', () => {
    const s = consistentHash({ loadFactor: 1 });
    const heavy = fake('heavy', { weight: 3 });
    const light = fake('light');
    const c = list(heavy, light);
    for (let i = 0; i < 400; i++) {
      const picked = s.pick(c, { key: `k${i % 7}` }) as ReturnType<typeof fake>;
      picked.inflight++;
    }
    expect(heavy.inflight).toBe(300);
    expect(light.inflight).toBe(100);
  });
});
