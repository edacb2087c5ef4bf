/**
 * Streaming merge of per-shard row streams for plain selects: a k-way merge when ordered, a
 * concatenation in shard order otherwise. It honours OFFSET and LIMIT, stops pulling once the limit
 * is reached, and always closes (`return()`) every input, also when the consumer stops early or an
 * input fails.
 *
 * Inputs and output are chunks of rows (what a cursor reads at once): the merge compares rows
 * synchronously within the chunks it holds and awaits only when one runs dry, instead of a promise
 * per row.
 *
 * @packageDocumentation
 */
import { hiddenStripper, MERGERS, type MergeSpec, orderOf, rowsToTake } from './scatter-merge';
import { orderMismatch, type RowOrder, type SortKeys } from './scatter-order';

type Row = Record<string, unknown>;
type Chunk = readonly Row[];

async function closeAll(iterators: readonly AsyncIterator<unknown>[]): Promise<void> {
  await Promise.allSettled(iterators.map((iterator) => iterator.return?.()));
}

/**
 * A shard's chunk stream as the merge reads it: `next(wanted)` says how many more rows the merge can
 * use at most, so a shard stream that reads with a cursor may read fewer than its chunk size
 * (near the end of a LIMIT); one that ignores it reads full chunks.
 */
type ShardChunks = AsyncIterator<Chunk, unknown, number | undefined>;

/** One input of the k-way merge: the chunk it holds, the position of its next row and that row's sort keys. */
interface Source {
  readonly iterator: ShardChunks;
  chunk: Chunk;
  at: number;
  done: boolean;
  head: SortKeys | undefined;
  /** The next chunk, read ahead while the merge still held rows of this one. */
  ahead: Promise<IteratorResult<Chunk, unknown>> | undefined;
}

/** Loads the source's next non-empty chunk (or marks it done); `wanted`: the most rows the merge can still use. */
async function refill(source: Source, wanted?: number): Promise<void> {
  for (;;) {
    const ahead = source.ahead;
    source.ahead = undefined;
    const next = ahead !== undefined ? await ahead : await source.iterator.next(wanted);
    if (next.done === true) {
      source.done = true;
      return;
    }
    if (next.value.length > 0) {
      source.chunk = next.value;
      source.at = 0;
      return;
    }
  }
}

/**
 * Starts reading the next chunk of every other source that may run dry before the merge has its
 * rows (it holds fewer than the merge still needs), while the merge waits for `waiting` anyway: the
 * shards' round trips overlap instead of following one another, each asking only for the rows it
 * could still contribute.
 */
function readAhead(sources: readonly Source[], waiting: Source, needed: number): void {
  for (const source of sources) {
    if (source === waiting || source.done || source.ahead !== undefined) continue;
    const held = source.chunk.length - source.at;
    if (held >= needed) continue;
    const ahead = source.iterator.next(Math.max(1, needed - held));
    // Awaited when the source runs dry; a failure before then must not go unhandled meanwhile.
    ahead.catch(() => undefined);
    source.ahead = ahead;
  }
}

/**
 * k-way merge of sorted chunk streams, yielding merged chunks of up to `chunkSize` rows and at most
 * `take` rows in all. Throws {@link orderMismatch} when a shard's rows are out of order.
 */
async function* mergeOrdered(sources: readonly Source[], order: RowOrder, chunkSize: number, take: number): AsyncGenerator<Row[]> {
  await Promise.all(sources.map((source) => refill(source)));
  let merged = 0;
  for (const source of sources) if (!source.done) source.head = order.keysOf(source.chunk[0]!);
  let out: Row[] = [];
  for (;;) {
    let best: Source | undefined;
    let bestIndex = -1;
    for (let i = 0; i < sources.length; i++) {
      const source = sources[i]!;
      if (source.done) continue;
      if (best === undefined || order.compare(source.head!, best.head!) < 0) {
        best = source;
        bestIndex = i;
      }
    }
    if (best === undefined) break;
    const bestRow = best.chunk[best.at]!;
    const bestKeys = best.head!;
    best.at++;
    if (best.at >= best.chunk.length) {
      if (merged + 1 >= take) {
        // The last row of the LIMIT: nothing more is needed from any shard.
        out.push(bestRow);
        yield out;
        return;
      }
      if (out.length > 0) {
        // About to wait for a shard: hand over what is merged so far.
        yield out;
        out = [];
      }
      // Rows merged so far plus this one: a shard can give at most the rest of `take`.
      const needed = take - merged - 1;
      if (needed > 0) readAhead(sources, best, needed);
      await refill(best, Math.max(1, needed));
    }
    if (!best.done) {
      const next = order.keysOf(best.chunk[best.at]!);
      if (order.compare(bestKeys, next) > 0) throw orderMismatch(bestIndex);
      best.head = next;
    }
    out.push(bestRow);
    merged++;
    if (out.length >= chunkSize) {
      yield out;
      out = [];
    }
  }
  if (out.length > 0) yield out;
}

async function* concatenate(iterators: readonly AsyncIterator<Chunk>[]): AsyncGenerator<Chunk> {
  for (const iterator of iterators) {
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) yield next.value;
  }
}

/**
 * Merges per-shard chunk streams (each sorted by the plan's ORDER BY) into the plan's result, in
 * chunks of up to `chunkSize` rows. Plans that are not streamable (aggregates, DISTINCT) read every
 * stream to the end and yield the result of the array merge.
 */
export async function* mergeChunkStreams(streams: readonly AsyncIterable<Chunk>[], spec: MergeSpec, chunkSize: number): AsyncGenerator<Row[]> {
  const iterators = streams.map((stream) => stream[Symbol.asyncIterator]());
  try {
    if (spec.mode !== 'rows') {
      const rowsPerShard = await Promise.all(
        iterators.map(async (iterator) => {
          const rows: Row[] = [];
          for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) rows.push(...next.value);
          return rows;
        }),
      );
      const merged = MERGERS[spec.mode](rowsPerShard, spec);
      for (let at = 0; at < merged.length; at += chunkSize) yield merged.slice(at, at + chunkSize);
      return;
    }
    const take = rowsToTake(spec);
    if (take === 0) return;
    const source =
      spec.orderKeys.length > 0
        ? mergeOrdered(iterators.map((iterator) => ({ iterator: iterator as ShardChunks, chunk: [], at: 0, done: false, head: undefined, ahead: undefined })), orderOf(spec), chunkSize, take)
        : concatenate(iterators);
    let index = 0;
    const strip = hiddenStripper(spec.hidden);
    for await (const chunk of source) {
      const out: Row[] = [];
      for (const row of chunk) {
        if (index++ >= spec.offset) out.push(strip(row));
        if (index >= take) break;
      }
      if (out.length > 0) yield out;
      if (index >= take) return;
    }
  } finally {
    await closeAll(iterators);
  }
}

/** Row streams as chunk streams of one row each. */
async function* singleRows(rows: AsyncIterable<Row>): AsyncGenerator<Chunk> {
  for await (const row of rows) yield [row];
}

/** {@link mergeChunkStreams} over row streams, yielding rows. */
export async function* mergeRowStreams(streams: readonly AsyncIterable<Row>[], spec: MergeSpec): AsyncGenerator<Row> {
  for await (const chunk of mergeChunkStreams(streams.map(singleRows), spec, 1)) yield* chunk;
}
