import { offlineKysely } from '../../support/offline-kysely';
import { planScatter } from '../../../src/sharding/scatter/scatter-plan';
import { allOfType } from '../../support/scatter-types';

const db = offlineKysely();

type Row = Record<string, unknown>;

/** A shard stream that records how far it was read and whether it was closed. */
function shard(rows: Row[], log: { pulled: number; closed: boolean }, failAt?: number): AsyncIterable<Row> {
  return (async function* () {
    try {
      for (const [i, row] of rows.entries()) {
        if (i === failAt) throw new Error('shard failed');
        log.pulled++;
        yield row;
      }
    } finally {
      log.closed = true;
    }
  })();
}

const collect = async (rows: AsyncIterable<Row>): Promise<Row[]> => {
  const out: Row[] = [];
  for await (const row of rows) out.push(row);
  return out;
};

const plan = planScatter(db.selectFrom('t').select('v').orderBy('v', 'desc').limit(3).offset(1).toOperationNode());
const r = (v: number) => ({ v, __ks_x0: String(v) });
const integers = allOfType('integer');
const values = (n: number, step: number, start: number) => Array.from({ length: n }, (_, i) => r(start - i * step));

test('ordered k-way merge honours offset/limit, stops early and closes every input', async () => {
  const logs = [0, 1, 2].map(() => ({ pulled: 0, closed: false }));
  const streams = [shard(values(100, 3, 300), logs[0]!), shard(values(100, 3, 299), logs[1]!), shard(values(100, 3, 298), logs[2]!)];
  expect(plan.streamable).toBe(true);
  expect(await collect(plan.mergeStreams(streams, integers))).toEqual([{ v: 299 }, { v: 298 }, { v: 297 }]);
  expect(logs.every((log) => log.closed && log.pulled < 5)).toBe(true);
});

test('a consumer that stops early closes the inputs', async () => {
  const logs = [0, 1].map(() => ({ pulled: 0, closed: false }));
  const all = planScatter(db.selectFrom('t').select('v').orderBy('v', 'desc').toOperationNode());
  for await (const row of all.mergeStreams([shard(values(50, 1, 100), logs[0]!), shard(values(50, 1, 60), logs[1]!)], integers)) {
    expect(row).toEqual({ v: 100 });
    break;
  }
  expect(logs.every((log) => log.closed)).toBe(true);
});

test('a failing input closes the others and rejects', async () => {
  const logs = [0, 1].map(() => ({ pulled: 0, closed: false }));
  const all = planScatter(db.selectFrom('t').select('v').orderBy('v').toOperationNode());
  await expect(collect(all.mergeStreams([shard(values(10, -1, 0), logs[0]!, 5), shard(values(10, -1, 0), logs[1]!)], integers))).rejects.toThrow('shard failed');
  expect(logs.every((log) => log.closed)).toBe(true);
});

test('unordered streams concatenate in shard order; aggregate plans buffer and merge', async () => {
  const logs = [0, 1].map(() => ({ pulled: 0, closed: false }));
  const unordered = planScatter(db.selectFrom('t').select('v').limit(3).toOperationNode());
  expect(await collect(unordered.mergeStreams([shard([{ v: 1 }, { v: 2 }], logs[0]!), shard([{ v: 3 }, { v: 4 }], logs[1]!)]))).toEqual([{ v: 1 }, { v: 2 }, { v: 3 }]);
  const counted = planScatter(db.selectFrom('t').select((eb) => eb.fn.countAll().as('n')).toOperationNode());
  expect(counted.streamable).toBe(false);
  expect(await collect(counted.mergeStreams([shard([{ n: '2' }], logs[0]!), shard([{ n: '5' }], logs[1]!)]))).toEqual([{ n: '7' }]);
});
