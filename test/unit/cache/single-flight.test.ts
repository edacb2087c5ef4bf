import { SingleFlight } from '../../../src/cache/single-flight';

describe('single-flight', () => {
  it('runs one loader per key and marks flights stale', async () => {
    const sf = new SingleFlight<number>();
    let calls = 0;
    let release!: (v: number) => void;
    const run = () => {
      calls++;
      return new Promise<number>((r) => (release = r));
    };
    const a = sf.run('k', ['t'], run);
    const b = sf.run('k', ['t'], run);
    expect(a).toBe(b);
    sf.markWhere((f) => f.tags.includes('t'));
    expect(a.stale).toBe(true);
    release(7);
    expect(await Promise.all([a.promise, b.promise])).toEqual([7, 7]);
    expect(calls).toBe(1);
    expect(sf.size).toBe(0);
  });
});
