/**
 * An app instance writing and reading an unsharded table (`notes`) while a drain moves it, run as
 * its own process: argv role catalogUrl appUser sharedRows. `follower`: follows the catalog and
 * reloads on a fence refusal; `stale`: never follows the catalog and cannot reload. Both insert
 * notes (serial ids) and update their own (the follower the shared ones too: ids 1..sharedRows),
 * then read one back (after a refused write, a shared one). One JSON line per acknowledged write (`op`, `id`, `body`, `ms`, `at`: when it was acked),
 * per read (`read`, `body`, `from`: when it began), per refusal and per unexpected error; stops on
 * a line `stop` on stdin and prints `{"done":…}`.
 */
import { createInterface } from 'node:readline';
import { Kysely, type Generated } from 'kysely';
import { ShardedDialect } from '../../../src/sharding/dialect/sharded-dialect';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { followCatalog } from '../../../src/admin/follow-catalog';
import type { PoolLike } from '../../../src/cluster/server-pools';
import { StaleTopologyError } from '../../../src/cluster/topology-fence';
import type { ServerSpec } from '../../../src/cluster/topology';
import { poolAsRole } from '../../support/direct-pool';

interface DB {
  notes: { id: Generated<number>; author: string; body: number };
}

const [role, catalogUrl, appUser, sharedText] = process.argv.slice(2) as ['follower' | 'stale', string, string, string];
const shared = Number(sharedText);
const out = (line: object): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);

function appPool(server: ServerSpec): PoolLike {
  return poolAsRole(server.url, appUser, 3) as unknown as PoolLike;
}

async function main(): Promise<void> {
  const catalog = new TopologyCatalog({ url: catalogUrl, reconnectDelayMillis: 50 });
  const dialect = new ShardedDialect({
    topology: (await catalog.latest())!,
    shardKeys: { users: 'id', orders: 'user_id' },
    unshardedTables: ['notes'],
    createPool: appPool,
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
  const counts = { acks: 0, refused: 0, unknown: 0, badReads: 0, reads: 0 };
  const mine: number[] = [];
  let body = role === 'stale' ? 1_000_000 : 0;
  out({ ready: role });
  while (!stopping) {
    const r = Math.random();
    const op = mine.length < 5 || r < 0.4 ? 'insert' : 'update';
    const value = ++body;
    const started = Date.now();
    // Each row has one writer (the follower writes the shared rows), so its bodies only grow.
    let id: number | undefined = op === 'update' ? (role === 'follower' && r < 0.7 ? 1 + Math.floor(Math.random() * shared) : mine[Math.floor(Math.random() * mine.length)]!) : undefined;
    try {
      if (op === 'insert') {
        id = Number((await db.insertInto('notes').values({ author: role, body: value }).returning('id').executeTakeFirstOrThrow()).id);
        mine.push(id);
      } else {
        await db.updateTable('notes').set({ body: value }).where('id', '=', id!).execute();
      }
      counts.acks++;
      out({ op, id, body: value, ms: Date.now() - started, at: Date.now() });
    } catch (error) {
      if (error instanceof StaleTopologyError) {
        counts.refused++;
        out({ refused: op, id: id ?? null, at: Date.now() });
      } else {
        counts.unknown++;
        out({ unknown: op, id: id ?? null, error: (error as Error).message });
      }
      id = 1 + Math.floor(Math.random() * shared); // read a shared row instead
    }
    // Read it back: the test checks no read returned a value older than one acknowledged before it began.
    const from = Date.now();
    try {
      const rows = await db.selectFrom('notes').select('body').where('id', '=', id!).execute();
      counts.reads++;
      out({ read: id, body: rows[0]?.body ?? null, from });
      if (rows.length !== 1) {
        counts.badReads++;
        out({ badRead: id, got: rows.map((x) => x.body) });
      }
    } catch (error) {
      if (error instanceof StaleTopologyError) {
        counts.refused++;
        out({ readRefused: id, at: Date.now() });
      } else {
        counts.unknown++;
        out({ unknown: 'read', id, error: (error as Error).message });
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
