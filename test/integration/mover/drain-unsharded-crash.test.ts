/**
 * The mover killed (SIGKILL) in each phase of a drain's unsharded step, then `resume` or `abort`:
 * no note lost or duplicated, no fence left up, and the holder is where the outcome says (resume
 * finishes; abort rolls back unless the new holder was published, then it finishes the step).
 */
import type { Client } from 'pg';
import { directClient } from '../../support/direct-pool';
import type { MoverFixture } from './mover-fixture';
import { notesByShard, startUnshardedFixture, crashUnshardedDrainAt } from './unsharded-fixture';
import { abortMove, resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { TOPOLOGY_VERSION_SETTING } from '../../../src/cluster/topology-fence';


/** An app-role session on shard `i` tagged with topology `version` (as the dialect's sessions are). */
async function appSession(f: MoverFixture, i: number, version: number): Promise<Client> {
  const c = directClient({ connectionString: f.appUrl(i) });
  await c.connect();
  await c.query('select set_config($1, $2, false)', [TOPOLOGY_VERSION_SETTING, String(version)]);
  return c;
}

async function fencesLeft(f: MoverFixture): Promise<number> {
  let n = 0;
  for (const pool of f.pools) {
    const { rows } = await pool.query(`select to_regclass('kysely_scale.unsharded_fence') is not null as ok`);
    if (rows[0].ok === true) n += (await pool.query('select count(*)::int as n from kysely_scale.unsharded_fence')).rows[0].n as number;
  }
  return n;
}

const cases: [string, 'resume' | 'abort'][] = [
  ['unsharded-fenced', 'resume'],
  ['unsharded-switched', 'abort'],
  ['unsharded-switched', 'resume'],
  ['unsharded-published', 'abort'],
];

test.each(cases)('killed at %s, then %s: no note lost or duplicated, no fence left, the holder where the outcome says', async (point, then) => {
  const f = await startUnshardedFixture(`mover_unsh_${point.replace(/-/g, '_')}_${then}`, 2);
  try {
    const v1 = await f.init(2, 32);
    await f.seed(v1, 0, 60);
    await crashUnshardedDrainAt(f.catalogUrl, point);
    const catalog = new TopologyCatalog({ url: f.catalogUrl });
    const atCrash = (await catalog.latest())!;
    const extra: number[] = [];
    if (point === 'unsharded-fenced') {
      // The dead mover's fence refuses writes to the old holder's copies (KS002, naming the version that will record the new holder)…
      const app = await appSession(f, 0, atCrash.version);
      try {
        await expect(app.query(`insert into notes (author, body) values ('during', 1)`)).rejects.toMatchObject({ code: 'KS002' });
        // …until its time has passed: then writes go through again, and the resumed step copies them.
        await f.pools[0]!.query(`update kysely_scale.unsharded_fence set fenced_until = now() - interval '1 second'`);
        extra.push(Number((await app.query(`insert into notes (author, body) values ('during', 1) returning id`)).rows[0].id));
      } finally {
        await app.end();
      }
    }
    if (point === 'unsharded-switched') {
      // Switched but not published: the old holder refuses a router of the current version (it must wait for the next).
      const app = await appSession(f, 0, atCrash.version);
      try {
        await expect(app.query('select count(*) from notes')).rejects.toMatchObject({ code: 'KS001' });
      } finally {
        await app.end();
      }
    }
    const result = then === 'resume' ? await resumeMove({ catalog: f.catalogUrl }) : await abortMove({ catalog: f.catalogUrl });
    expect(result.error).toBeNull();
    const latest = (await catalog.latest())!;
    await catalog.close();
    const finished = then === 'resume' || point === 'unsharded-published';
    expect(result.unsharded?.phase).toBe(finished ? 'cleaned' : 'aborted');
    // An abort after the publish says the tables moved (the step was finished, not rolled back).
    expect(result.unsharded?.holderMoved).toBe(finished);
    expect(latest.unshardedShardId).toBe(finished ? 'shard1' : undefined);
    expect(latest.shards.map((s) => s.id)).toEqual(then === 'resume' ? ['shard1'] : ['shard0', 'shard1']);
    const rows = await notesByShard(f.pools);
    expect([...rows.keys()].sort((a, b) => a - b)).toEqual([...Array(40).keys()].map((i) => i + 1).concat(extra));
    expect([...rows.values()].every((copies) => copies.length === 1 && copies[0]![0] === (finished ? 1 : 0))).toBe(true);
    expect(await fencesLeft(f)).toBe(0);
    // Routers of the latest version use the holder: reads and writes go through.
    const holder = f.shards.findIndex((s) => s.id === (latest.unshardedShardId ?? 'shard0'));
    const app = await appSession(f, holder, latest.version);
    try {
      await app.query(`insert into notes (author, body) values ('after', 2)`);
      expect((await app.query('select count(*)::int as n from notes')).rows[0].n).toBe(40 + extra.length + 1);
    } finally {
      await app.end();
    }
  } finally {
    await f.close();
  }
}, 30_000);
