import { PrimaryWatch } from '../../../src/replication/primary-watch';
import { lagBytesBound, lagProblem, RATE_MARGIN, stalenessBoundMillis } from '../../../src/replication/lag-bounds';
import type { ServerSpec } from '../../../src/cluster/topology';

const server = { url: 'postgres://p@h:1/db', redactedUrl: 'postgres://p@h:1/db' } as ServerSpec;

/** The primary seen at 1000 bytes per ms for 3 s (one observation a second), starting at t = 0. */
function steadyPrimary(): PrimaryWatch {
  const watch = new PrimaryWatch(server, 60_000);
  for (let s = 0; s <= 3; s++) watch.observe(BigInt(s * 1_000_000), s * 1000);
  return watch;
}

describe('lag bounds between checks', () => {
  test('bytes: the last known lag plus what the primary can have written since at 1.5 × its peak rate', () => {
    const watch = steadyPrimary();
    expect(watch.peakRate(3000)).toBe(1000);
    // A replica at 2.5 MB: 0.5 MB behind the last position; 200 ms later the primary may be 1.5 × 200 × 1000 further.
    expect(lagBytesBound(2_500_000n, watch, true, 3000)).toBe(500_000);
    expect(lagBytesBound(2_500_000n, watch, true, 3200)).toBe(500_000 + RATE_MARGIN * 200 * 1000);
    // A primary that is down writes nothing: the bound stops growing.
    expect(lagBytesBound(2_500_000n, watch, false, 9000)).toBe(500_000);
    // Never seen: unknown.
    expect(lagBytesBound(0n, new PrimaryWatch(server, 1000), true, 0)).toBeUndefined();
  });

  test('time: how long ago the primary was last seen at a position the replica holds', () => {
    const watch = steadyPrimary();
    expect(stalenessBoundMillis(3_000_000n, watch, 3500)).toBe(500);
    expect(stalenessBoundMillis(2_999_999n, watch, 3500)).toBe(1500);
    expect(stalenessBoundMillis(10n, watch, 3500)).toBe(3500);
    // Behind every position seen: nothing proves a bound.
    const late = new PrimaryWatch(server, 60_000);
    late.observe(5_000_000n, 0);
    expect(stalenessBoundMillis(4_000_000n, late, 10)).toBeUndefined();
  });

  test('the problem names the bound that is exceeded, bytes first', () => {
    const watch = steadyPrimary();
    expect(lagProblem(3_000_000n, watch, true, 3000, { maxLagBytes: 16 << 20, maxLagMillis: 30_000 })).toBeNull();
    expect(lagProblem(1_000_000n, watch, true, 3000, { maxLagBytes: 1_000_000, maxLagMillis: 30_000 })).toBe('it may be 2000000 bytes of WAL behind its primary (maxLagBytes 1000000)');
    expect(lagProblem(3_000_000n, watch, false, 40_000, { maxLagBytes: 16 << 20, maxLagMillis: 30_000 })).toBe('its data may be 37000 ms old (maxLagMillis 30000)');
    expect(lagProblem(0n, new PrimaryWatch(server, 1000), true, 0, { maxLagBytes: 1, maxLagMillis: 1 })).toMatch(/has not been seen yet/);
  });

  test('positions past a new primary’s are forgotten (a promoted standby never had them); old ones expire', () => {
    const watch = steadyPrimary();
    watch.observe(2_500_000n, 4000); // the promoted standby had replayed only to 2.5 MB
    expect(watch.latest).toEqual({ lsn: 2_500_000n, at: 4000 });
    expect(watch.newestAtOrBelow(2_600_000n)).toEqual({ lsn: 2_500_000n, at: 4000 });
    const short = new PrimaryWatch(server, 1000);
    for (let s = 0; s <= 5; s++) short.observe(BigInt(s), s * 1000);
    expect(short.newestAtOrBelow(0n)).toBeUndefined(); // older than the kept window
  });
});
