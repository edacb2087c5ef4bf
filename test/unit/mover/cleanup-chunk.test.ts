import { nextChunk } from '../../../src/admin/mover/batch-cleanup';
import { MAX_RANGE_PAGES, nextRangePages } from '../../../src/admin/mover/paged-scan';

test('clean-up deletes are sized toward one pacing slice, growing at most twofold and within bounds', () => {
  // 200 keys took 12 ms against a 3 ms slice: a quarter as many next time.
  expect(nextChunk(200, 12, 3)).toBe(50);
  // Fast deletes grow, but at most double per step, and never past 2,000 keys.
  expect(nextChunk(200, 0.5, 3)).toBe(400);
  expect(nextChunk(1500, 1, 3)).toBe(2000);
  expect(nextChunk(200, 0, 3)).toBe(400);
  // A very slow delete never shrinks the chunk below 20 keys.
  expect(nextChunk(50, 500, 3)).toBe(20);
  expect(nextChunk(200, 3, 3)).toBe(200);
});

test('scan ranges are sized toward one pacing slice of the shard\'s work, growing at most twofold and within bounds', () => {
  // 64 pages took 6 ms of work against a 3 ms slice: half as many next time.
  expect(nextRangePages(64, 6, 3)).toBe(32);
  // Fast ranges grow, at most twofold, never past MAX_RANGE_PAGES; slow ones shrink down to one page (wide rows).
  expect(nextRangePages(16, 0.1, 3)).toBe(32);
  expect(nextRangePages(16, 0, 3)).toBe(32);
  expect(nextRangePages(MAX_RANGE_PAGES, 0.1, 3)).toBe(MAX_RANGE_PAGES);
  expect(nextRangePages(32, 500, 3)).toBe(1);
  expect(nextRangePages(1, 50, 3)).toBe(1);
});
