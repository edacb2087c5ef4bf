/** The streamed k-way merge asks a shard that ran dry for no more rows than it can still use of the LIMIT. */
import { offlineKysely } from '../../support/offline-kysely';
import { planScatter } from '../../../src/sharding/scatter/scatter-plan';
import { allOfType } from '../../support/scatter-types';

const db = offlineKysely();
type Row = Record<string, unknown>;
const r = (v: number): Row => ({ v, __ks_x0: String(v) });
const integers = allOfType('integer');

/** A shard read like a cursor: chunks of `chunkSize`, or of `next(n)` rows when n is smaller; records each n asked. */
function shard(values: number[], chunkSize: number, asked: (number | undefined)[]): AsyncIterable<Row[]> {
  return (async function* () {
    let at = 0;
    let size = chunkSize;
    while (at < values.length) {
      const chunk = values.slice(at, at + size).map(r);
      at += chunk.length;
      const wanted = (yield chunk) as unknown as number | undefined;
      asked.push(wanted);
      size = wanted === undefined ? chunkSize : Math.min(wanted, chunkSize);
    }
  })();
}

const collect = async (chunks: AsyncIterable<Row[]>): Promise<unknown[]> => {
  const out: unknown[] = [];
  for await (const chunk of chunks) out.push(...chunk.map((row) => row.v));
  return out;
};

test('a refill asks for the rest of the LIMIT, not a whole chunk', async () => {
  const plan = planScatter(db.selectFrom('t').select('v').orderBy('v').limit(6).toOperationNode());
  const a: (number | undefined)[] = [];
  const b: (number | undefined)[] = [];
  const odd = [1, 3, 5, 7, 9, 11, 13];
  const even = [2, 4, 6, 8, 10, 12, 14];
  expect(await collect(plan.mergeChunks([shard(odd, 2, a), shard(even, 2, b)], 10, integers))).toEqual([1, 2, 3, 4, 5, 6]);
  // A ran dry after 1, 2, 3 (3 rows merged): at most 3 more can be used; B after 4 (4 merged): at most 2.
  expect(a[0]).toBe(3);
  expect(b[0]).toBe(2);
});

test('without a LIMIT every refill is a whole chunk, and the merge is complete', async () => {
  const plan = planScatter(db.selectFrom('t').select('v').orderBy('v', 'desc').toOperationNode());
  const asked: (number | undefined)[] = [];
  const values = (start: number) => Array.from({ length: 9 }, (_, i) => start - 2 * i);
  const merged = await collect(plan.mergeChunks([shard(values(100), 4, asked), shard(values(99), 4, asked)], 5, integers));
  expect(merged).toEqual([...values(100), ...values(99)].sort((x, y) => y - x));
  expect(asked.filter((n) => n !== undefined && n !== Infinity)).toEqual([]);
});

test('when one shard runs dry, the others that may run dry before the LIMIT read ahead at once: their round trips overlap', async () => {
  const plan = planScatter(db.selectFrom('t').select('v').orderBy('v').limit(16).toOperationNode());
  // Four shards with interleaved values and chunks of 4: all four run dry at about the same time.
  const pending: { shard: number; resolve: () => void }[] = [];
  const shardOf = (shard: number): AsyncIterable<Row[]> => {
    const values = Array.from({ length: 8 }, (_, i) => shard + 4 * i);
    let at = 0;
    const iterator: AsyncIterator<Row[], unknown, number | undefined> = {
      next(wanted) {
        const size = Math.min(wanted ?? 4, 4);
        return new Promise((resolve) =>
          pending.push({
            shard,
            resolve: () => {
              const chunk = values.slice(at, at + size).map(r);
              at += chunk.length;
              resolve(chunk.length === 0 ? { done: true, value: undefined } : { done: false, value: chunk });
            },
          }),
        );
      },
      return: async () => ({ done: true, value: undefined }),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  };
  const result = collect(plan.mergeChunks([0, 1, 2, 3].map(shardOf), 16, integers));
  // Each round: let the merge run until it waits, note which shards it is waiting on, answer them all.
  const rounds: number[][] = [];
  let finished = false;
  void result.then(() => (finished = true));
  while (!finished) {
    await new Promise((resolve) => setImmediate(resolve));
    if (pending.length === 0) continue;
    rounds.push(pending.map((p) => p.shard).sort());
    for (const p of pending.splice(0)) p.resolve();
  }
  expect(await result).toEqual(Array.from({ length: 16 }, (_, i) => i));
  // The first chunks (4 rows each, 16 merged), then one round where every shard is asked at once,
  // not one round per shard.
  expect(rounds[0]).toEqual([0, 1, 2, 3]);
  expect(rounds.length).toBeLessThanOrEqual(2);
  if (rounds.length === 2) expect(rounds[1]!.length).toBeGreaterThan(1);
});
