/**
 * Streaming merge of per-shard row streams for plain selects: a k-way merge when ordered, a
 * concatenation in shard order otherwise. It honours OFFSET and LIMIT, stops pulling once the limit
 * is reached, and always closes (`return()`) every input, also when the consumer stops early or an
 * input fails.
 *
 * @packageDocumentation
 */
import { MERGERS, type MergeSpec, rowsToTake, stripHidden } from './scatter-merge';
import { orderMismatch, rowComparator } from './scatter-order';

type Row = Record<string, unknown>;

async function closeAll(iterators: readonly AsyncIterator<Row>[]): Promise<void> {
  await Promise.allSettled(iterators.map((iterator) => iterator.return?.()));
}

/** Yields the merged rows of a `rows`-mode plan before offset/limit and hidden-column removal. */
async function* mergeOrdered(iterators: readonly AsyncIterator<Row>[], spec: MergeSpec): AsyncGenerator<Row> {
  const compare = rowComparator(spec.orderKeys, spec.compareText);
  const heads: (Row | undefined)[] = await Promise.all(
    iterators.map(async (iterator) => {
      const next = await iterator.next();
      return next.done === true ? undefined : next.value;
    }),
  );
  for (;;) {
    let best = -1;
    let bestRow: Row | undefined;
    heads.forEach((row, i) => {
      if (row !== undefined && (bestRow === undefined || compare(row, bestRow) < 0)) {
        best = i;
        bestRow = row;
      }
    });
    if (bestRow === undefined) return;
    const next = await (iterators[best] as AsyncIterator<Row>).next();
    const following = next.done === true ? undefined : next.value;
    if (following !== undefined && compare(bestRow, following) > 0) throw orderMismatch(best);
    heads[best] = following;
    yield bestRow;
  }
}

async function* concatenate(iterators: readonly AsyncIterator<Row>[]): AsyncGenerator<Row> {
  for (const iterator of iterators) {
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
  }
}

/**
 * Merges per-shard streams (each sorted by the plan's ORDER BY) into the plan's result stream.
 * Plans that are not streamable (aggregates, DISTINCT) read every stream to the end and yield the
 * result of the array merge.
 */
export async function* mergeRowStreams(streams: readonly AsyncIterable<Row>[], spec: MergeSpec): AsyncGenerator<Row> {
  const iterators = streams.map((stream) => stream[Symbol.asyncIterator]());
  try {
    if (spec.mode !== 'rows') {
      const rowsPerShard = await Promise.all(
        iterators.map(async (iterator) => {
          const rows: Row[] = [];
          for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) rows.push(next.value);
          return rows;
        }),
      );
      yield* MERGERS[spec.mode](rowsPerShard, spec);
      return;
    }
    const take = rowsToTake(spec);
    if (take === 0) return;
    const source = spec.orderKeys.length > 0 ? mergeOrdered(iterators, spec) : concatenate(iterators);
    let index = 0;
    for await (const row of source) {
      if (index++ >= spec.offset) yield stripHidden(row, spec.hidden);
      if (index >= take) return;
    }
  } finally {
    await closeAll(iterators);
  }
}
