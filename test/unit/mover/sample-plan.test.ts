/** What a row estimate reads of a table: whole, by evenly spread ranges of pages (a known number of them), or by TABLESAMPLE. */
import { samplePlan } from '../../../src/admin/mover/table-estimate';

const ranges = (sources: readonly string[]): [number, number][] =>
  sources.map((s) => {
    const m = /ctid >= '\((\d+),0\)'::tid and ctid < '\((\d+),0\)'::tid$/.exec(s);
    if (m === null) throw new Error(`not a range: ${s}`);
    return [Number(m[1]), Number(m[2])];
  });

test('a table within the pages to spend is counted whole', () => {
  expect(samplePlan({ name: '"t"', pages: 300, ranged: true }, 300)).toEqual({ sources: ['only "t"'], scale: 1 });
  expect(samplePlan({ name: '"t"', pages: 3, ranged: false }, 500)).toEqual({ sources: ['only "t"'], scale: 1 });
});

test('a larger one: 256 short disjoint ranges in order, one in the middle of each 256th, the pages read known and scaled to the whole', () => {
  const plan = samplePlan({ name: '"public"."big"', pages: 8000, ranged: true }, 2000);
  const read = ranges(plan.sources);
  expect(read).toHaveLength(256);
  expect(read.every(([from, to]) => to - from === 7 && from >= 0 && to <= 8000)).toBe(true);
  for (let i = 1; i < read.length; i++) expect(read[i]![0]).toBeGreaterThanOrEqual(read[i - 1]![1]);
  expect(read[0]).toEqual([12, 19]);
  expect(read[255]).toEqual([7980, 7987]);
  expect(plan.scale).toBe(8000 / (256 * 7));
});

test('fewer runs when asked (many tables share a statement): 16 ranges, one in the middle of each sixteenth', () => {
  const plan = samplePlan({ name: '"public"."big"', pages: 8000, ranged: true }, 2000, undefined, 16);
  const read = ranges(plan.sources);
  expect(read).toHaveLength(16);
  expect(read.every(([from, to]) => to - from === 125 && from >= 0 && to <= 8000)).toBe(true);
  for (let i = 1; i < read.length; i++) expect(read[i]![0]).toBeGreaterThanOrEqual(read[i - 1]![1]);
  expect(read[0]).toEqual([187, 312]);
  expect(read[15]).toEqual([7687, 7812]);
  expect(plan.scale).toBe(8000 / 2000);
});

test('few pages to spend: one-page ranges, as many as pages; the end of the table is never passed', () => {
  const plan = samplePlan({ name: '"t"', pages: 10, ranged: true }, 3);
  expect(ranges(plan.sources)).toEqual([[1, 2], [4, 5], [7, 8]]);
  expect(plan.scale).toBe(10 / 3);
  expect(ranges(samplePlan({ name: '"t"', pages: 101, ranged: true }, 100).sources).every(([from, to]) => to <= 101 && to - from === 1)).toBe(true);
  expect(ranges(samplePlan({ name: '"t"', pages: 101, ranged: true }, 100, undefined, 16).sources).every(([from, to]) => to <= 101 && to - from === 6)).toBe(true);
});

test('a table that cannot be read by TID ranges is sampled by TABLESAMPLE SYSTEM, scaled by the share asked for', () => {
  expect(samplePlan({ name: '"t"', pages: 8000, ranged: false }, 2000)).toEqual({ sources: ['only "t" tablesample system (25) repeatable (0)'], scale: 4 });
});

test('paced (a move plan): a table read whole by TID ranges is read in ranges of at most rangePages, the last one open-ended', () => {
  const plan = samplePlan({ name: '"t"', pages: 300, ranged: true }, 2000, 128);
  expect(plan).toEqual({
    sources: [`only "t" where ctid >= '(0,0)'::tid and ctid < '(128,0)'::tid`, `only "t" where ctid >= '(128,0)'::tid and ctid < '(256,0)'::tid`, `only "t" where ctid >= '(256,0)'::tid`],
    scale: 1,
  });
  // Within one range, or not readable by ranges: one statement, as unpaced.
  expect(samplePlan({ name: '"t"', pages: 128, ranged: true }, 2000, 128)).toEqual({ sources: ['only "t"'], scale: 1 });
  expect(samplePlan({ name: '"t"', pages: 300, ranged: false }, 2000, 128)).toEqual({ sources: ['only "t"'], scale: 1 });
  // A sampled table's ranges are already shorter than that: unchanged.
  expect(samplePlan({ name: '"t"', pages: 8000, ranged: true }, 2000, 128)).toEqual(samplePlan({ name: '"t"', pages: 8000, ranged: true }, 2000));
});
