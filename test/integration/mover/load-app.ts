/**
 * An app instance for the load tests, run as its own process: argv role catalogUrl appUser index.
 * `writer`: inserts, updates (some in transactions) and deletes its own keys, reading each back;
 * `reader`: exact scatter counts, point and `in` reads of the static rows; `stale`: like a writer
 * but never follows the catalog. Prints one JSON line per acknowledged write or failed check;
 * stops on a line `stop` on stdin and prints `{"done":…}`.
 */
import { createInterface } from 'node:readline';
import { Kysely } from 'kysely';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { followCatalog } from '../../../src/admin/follow-catalog';
import type { PoolLike } from '../../../src/cluster/server-pools';
import { retryOnFence } from '../../../src/admin/mover/fence-retry';
import { fenceRefusalOf, StaleTopologyError } from '../../../src/cluster/topology-fence';
import type { ServerSpec } from '../../../src/cluster/topology';
import { directPool } from '../../support/direct-pool';

interface DB {
  users: { id: number; name: string; score: number };
}

export const STATIC_USERS = 2000;

const [role, catalogUrl, appUser, indexText] = process.argv.slice(2) as ['writer' | 'reader' | 'stale', string, string, string];
const index = Number(indexText);
const out = (line: object): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);

function asApp(server: ServerSpec): ServerSpec {
  const url = new URL(server.url);
  url.username = appUser;
  const spec = { redactedUrl: server.redactedUrl } as ServerSpec;
  Object.defineProperty(spec, 'url', { value: url.toString() });
  return spec;
}

function appPool(server: ServerSpec): PoolLike {
  const pool = directPool({ connectionString: server.url, max: 4 });
  pool.on('error', () => undefined);
  return pool as unknown as PoolLike;
}

async function main(): Promise<void> {
  const catalog = new TopologyCatalog({ url: catalogUrl, reconnectDelayMillis: 50 });
  const topology = (await catalog.latest())!;
  // The dialect's own fence handling: sessions tagged with their topology version, refusals
  // reloaded from the catalog and run once more. The stale instance has no source to reload from.
  const dialect: ShardedDialect = new ShardedDialect({
    topology,
    shardKeys: { users: 'id' },
    keylessPolicy: { users: 'scatter' },
    createPool: (server) => appPool(asApp(server)),
    fenceSessions: true,
    ...(role === 'stale' ? {} : { topologySource: catalog }),
    onPoolError: () => undefined,
  });
  const db = new Kysely<DB>({ dialect });
  const watch = role === 'stale' ? undefined : await followCatalog(dialect, catalog);
  let stopping = false;
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() === 'stop') stopping = true;
  });
  const counts = { acks: 0, refused: 0, unknown: 0, badReads: 0, inexact: 0, reads: 0 };
  // Statements retry inside the dialect; a transaction refused by a fence is run again as a whole.
  const run = <T>(fn: () => Promise<T>): Promise<T> => fn();
  const runTransaction = <T>(fn: () => Promise<T>): Promise<T> => (role === 'stale' ? fn() : retryOnFence(dialect, catalog, fn));
  const refused = (error: unknown): boolean => error instanceof StaleTopologyError || fenceRefusalOf(error) !== undefined;
  out({ ready: role, index });

  if (role === 'reader') {
    while (!stopping) {
      try {
        const [{ n }] = (await run(() => db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).where('name', '=', 'static').execute())) as [{ n: string }];
        counts.reads++;
        out({ read: Number(n) });
        if (Number(n) !== STATIC_USERS) {
          counts.inexact++;
          out({ inexact: Number(n) });
        }
        const ids = Array.from({ length: 5 }, () => Math.floor(Math.random() * STATIC_USERS));
        const rows = await run(() => db.selectFrom('users').select('id').where('id', 'in', ids).execute());
        const one = await run(() => db.selectFrom('users').select('id').where('id', '=', ids[0]!).execute());
        if (rows.length !== new Set(ids).size || one.length !== 1) {
          counts.badReads++;
          out({ badRead: ids, got: rows.length, one: one.length });
        }
      } catch (error) {
        if (refused(error)) counts.refused++;
        else {
          counts.unknown++;
          out({ error: (error as Error).message });
        }
      }
    }
  } else {
    const base = role === 'stale' ? 9_000_000 : 1_000_000 * (index + 1);
    const live: number[] = [];
    let next = 0;
    let score = 0;
    while (!stopping) {
      const r = Math.random();
      const op = live.length < 30 || r < 0.4 ? 'insert' : r < 0.85 ? 'update' : 'delete';
      const id = op === 'insert' ? base + next++ : live[Math.floor(Math.random() * live.length)]!;
      const value = ++score;
      try {
        if (op === 'insert') await run(() => db.insertInto('users').values({ id, name: 'load', score: value }).execute());
        else if (op === 'update' && r < 0.6) await runTransaction(() => db.transaction().execute((tx) => tx.updateTable('users').set({ score: value }).where('id', '=', id).execute()));
        else if (op === 'update') await run(() => db.updateTable('users').set({ score: value }).where('id', '=', id).execute());
        else await run(() => db.deleteFrom('users').where('id', '=', id).execute());
        counts.acks++;
        out({ op, id, score: value });
        if (op === 'insert') live.push(id);
        if (op === 'delete') live.splice(live.indexOf(id), 1);
        // Read it back: the latest acknowledged write of this process, never an older one.
        const rows = await run(() => db.selectFrom('users').select('score').where('id', '=', id).execute());
        counts.reads++;
        const expected = op === 'delete' ? undefined : value;
        if (rows[0]?.score !== expected || rows.length > 1) {
          counts.badReads++;
          out({ badRead: id, expected, got: rows.map((x) => x.score) });
        }
      } catch (error) {
        if (refused(error)) {
          counts.refused++;
          out({ refused: op, id });
          if (op === 'insert') next--; // the key was not written: use it again
        } else {
          counts.unknown++;
          out({ unknown: op, id, error: (error as Error).message });
        }
      }
    }
  }
  out({ done: counts });
  await watch?.close();
  await db.destroy();
  await catalog.close();
  process.exit(0);
}

main().catch((error: unknown) => {
  out({ fatal: (error as Error).message });
  process.exit(1);
});
