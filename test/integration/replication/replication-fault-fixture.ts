/**
 * Shared helpers of the replication fault tests: a real pg pool that counts statements per
 * server, faults on real server processes (freeze with SIGSTOP, kill with SIGKILL), a reader load
 * that records every read's outcome and latency, and percentiles. No mocks: every read reaches a
 * real PostgreSQL server.
 */
import { execFileSync } from 'node:child_process';
import { Pool } from 'pg';
import type { PoolClientLike, PoolLike } from '../../../src/cluster/server-pools';
import type { TestCluster, TestServer, TestShardUrls } from '../../../src/testing';
import { waitForReplay, withPg } from '../../support/postgres-replication';
import { directPool } from '../../support/direct-pool';

/** Statements per server URL that matched a filter (counted, not stored). */
export class ServerCounts {
  readonly #counts = new Map<string, number>();
  constructor(readonly matches: (sql: string) => boolean) {}
  add(url: string): void {
    this.#counts.set(url, (this.#counts.get(url) ?? 0) + 1);
  }
  on(url: string): number {
    return this.#counts.get(url) ?? 0;
  }
  reset(): void {
    this.#counts.clear();
  }
}

/** A real pg Pool (its connection counts visible to least-connections) that counts matching statements in each of `counts`. */
export function countedPool(url: string, counts: ServerCounts | readonly ServerCounts[], max = 20): PoolLike {
  const all = Array.isArray(counts) ? counts : [counts as ServerCounts];
  const pool = directPool({ connectionString: url, max, connectionTimeoutMillis: 10_000, allowExitOnIdle: true });
  pool.on('connect', (client) => client.on('error', () => undefined));
  return {
    on: (event, listener) => pool.on(event, listener),
    end: () => pool.end(),
    get totalCount() {
      return pool.totalCount;
    },
    get idleCount() {
      return pool.idleCount;
    },
    get waitingCount() {
      return pool.waitingCount;
    },
    async connect(): Promise<PoolClientLike> {
      const client = await pool.connect();
      return {
        query: ((text: unknown, values?: unknown[]) => {
          if (typeof text === 'string') for (const c of all) if (c.matches(text)) c.add(url);
          return (client.query as (...a: unknown[]) => unknown)(text, values);
        }) as PoolClientLike['query'],
        release: (destroy?: boolean | Error) => client.release(destroy),
      };
    },
  };
}

/** The pids of a server and every process it started (its backends). */
function processTree(server: TestServer): number[] {
  const pid = server.pid;
  if (pid === undefined) throw new Error(`${server.url} has no pid (not a local process, or not running)`);
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // pgrep exits 1 when there is no child
  }
  return [pid, ...children];
}

/** Freezes a server and its backends: connections stay open, nothing answers. Returns the thaw function. */
export function freeze(server: TestServer): () => void {
  // The postmaster first, so no backend is forked after the children are listed; a child that
  // ended between the listing and its signal needs no stopping (it failed a CI run with ESRCH).
  process.kill(server.pid ?? processTree(server)[0]!, 'SIGSTOP');
  const pids = processTree(server);
  for (const pid of pids.slice(1)) {
    try {
      process.kill(pid, 'SIGSTOP');
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ESRCH') throw error;
    }
  }
  return () => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
  };
}

/** Kills a server with SIGKILL (no shutdown at all) and waits until its processes are gone, so it can start again. */
export async function kill9(server: TestServer): Promise<void> {
  const pids = processTree(server);
  process.kill(pids[0]!, 'SIGKILL');
  for (const pid of pids.slice(1)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const until = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await server.stop(); // the harness sees the exit; start() works again
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One read of a load. */
export interface ReadRecord {
  /** performance.now() at its start. */
  readonly at: number;
  readonly millis: number;
  /** The error's code when it failed (`E_…`, a SQLSTATE, a socket code, or 'error'). */
  readonly failed: string | undefined;
}

/** Readers that run `read` in a loop until stopped, recording every read. */
export class ReaderLoad {
  readonly records: ReadRecord[] = [];
  #running = true;
  readonly #done: Promise<void>;

  constructor(readers: number, read: (reader: number, n: number) => Promise<void>) {
    this.#done = Promise.all(
      Array.from({ length: readers }, async (_, reader) => {
        for (let n = 0; this.#running; n++) {
          const at = performance.now();
          let failed: string | undefined;
          try {
            await read(reader, n);
          } catch (error) {
            failed = String((error as { code?: unknown })?.code ?? 'error');
          }
          this.records.push({ at, millis: performance.now() - at, failed });
          // A read that fails at once must not starve the event loop (timers, other readers).
          if (failed !== undefined) await new Promise((resolve) => setImmediate(resolve));
        }
      }),
    ).then(() => undefined);
  }

  /** Stops the readers and waits for their last reads. */
  stop(): Promise<void> {
    this.#running = false;
    return this.#done;
  }

  /** Reads that started in [from, to). */
  between(from: number, to: number): ReadRecord[] {
    return this.records.filter((r) => r.at >= from && r.at < to);
  }
}

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A one-line summary of reads, for the figures a test prints. */
export function summary(records: readonly ReadRecord[]): { reads: number; failed: number; p99Millis: number; maxMillis: number } {
  const millis = records.map((r) => r.millis);
  return {
    reads: records.length,
    failed: records.filter((r) => r.failed !== undefined).length,
    p99Millis: Math.round(percentile(millis, 99) * 10) / 10,
    maxMillis: Math.round(millis.reduce((a, b) => Math.max(a, b), 0) * 10) / 10,
  };
}

/** Waits (polling every 10 ms) until `check` holds, failing after `timeoutMillis`: for real server events only. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMillis = 15_000): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMillis) throw new Error(`timed out after ${timeoutMillis} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - started;
}

/** Creates `database` on the cluster's one shard, runs `statements` on its primary, and returns once every replica replayed them. */
export async function replicatedShard(cluster: TestCluster, database: string, statements: readonly string[]): Promise<TestShardUrls> {
  const [shard] = (await cluster.createDatabase(database)) as [TestShardUrls];
  await withPg(shard.primaryUrl, async (c) => {
    for (const statement of statements) await c.query(statement);
  });
  for (const url of shard.replicaUrls) await waitForReplay(shard.primaryUrl, url);
  return shard;
}
