import { estimateMoveSeconds } from '../../../src/admin/mover/move-estimate';

const tuning = { maxRowsPerSecond: undefined, niceRatio: 1, cleanupDelayMillis: 500 };

describe('the dry-run time estimate', () => {
  test('a throttle applies to the copy and to the clean-up', () => {
    // 5,000 rows at 500 rows/s: 10 s copying and 10 s deleting, plus the batch's fixed costs.
    const s = estimateMoveSeconds([{ rows: 5000, sourceRows: 10_000, targetRows: 0 }], { ...tuning, maxRowsPerSecond: 500 });
    expect(s).toBeGreaterThanOrEqual(21);
    expect(s).toBeLessThan(23);
  });

  test('each batch costs its fixed time, and the nice ratio stretches the busy time', () => {
    const one = estimateMoveSeconds([{ rows: 100, sourceRows: 100, targetRows: 0 }], tuning);
    const four = estimateMoveSeconds(Array.from({ length: 4 }, () => ({ rows: 100, sourceRows: 100, targetRows: 0 })), tuning);
    expect(four).toBeGreaterThanOrEqual(4 * 1.5);
    expect(one).toBeLessThan(four);
    const big = [{ rows: 1_000_000, sourceRows: 2_000_000, targetRows: 0 }];
    expect(estimateMoveSeconds(big, { ...tuning, niceRatio: 3 })).toBeGreaterThan(1.9 * estimateMoveSeconds(big, { ...tuning, niceRatio: 0 }) - 2);
  });
});
