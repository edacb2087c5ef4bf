/**
 * What a drain's unsharded step copies, on schemas beyond one serial table: a foreign key from a
 * table that sorts before the one it references, an audit trigger, a stored generated column, a
 * sequence named only in a column default, inheritance. Before that, attempts whose fence runs
 * out (the result then says no row is on the target), and a copy that fails: the fence is lowered
 * at once, the error carries the mover's code with the SQLSTATE; fixed, `resume` finishes the step.
 */
import { directClient } from '../../support/direct-pool';
import { startMoverFixture, TABLES, APP_ROLE, type MoverFixture } from './mover-fixture';
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { resumeMove } from '../../../src/admin/mover/move-control';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { TOPOLOGY_VERSION_SETTING } from '../../../src/cluster/topology-fence';

const SCHEMA = `
create table cities (id serial primary key, country_code text not null references countries (code), name text not null);
create sequence ticket_seq;
create table tickets (id bigint primary key default nextval('ticket_seq'), t text);
create table audit (id bigserial primary key, what text);
create table items (id serial primary key, name text);
create function items_audit() returns trigger language plpgsql as $$ begin insert into audit (what) values ('item ' || new.id); return new; end $$;
create trigger items_audit after insert on items for each row execute function items_audit();
create table prices (id serial primary key, net integer not null, gross integer generated always as (net * 2) stored);
create table animals (id integer primary key, name text);
create table dogs (bark text) inherits (animals);
alter table prices drop column gross;
alter table prices add column note text, add column gross integer generated always as (net * 2) stored;
grant select, insert on countries to ${APP_ROLE};
`;

const SEED = `
insert into countries values ('FR', 'France');
insert into cities (country_code, name) values ('FR', 'Paris');
insert into tickets (t) select 'ticket' from generate_series(1, 5);
insert into items (name) values ('a'), ('b');
insert into prices (net, note) values (1, 'one'), (2, 'two');
insert into animals values (1, 'cat');
insert into dogs values (2, 'rex', 'woof');
`;

let f: MoverFixture;

afterAll(() => f?.close());

async function one(i: number, sql: string): Promise<unknown[]> {
  return (await f.pools[i]!.query(sql)).rows;
}

test('foreign keys, triggers, generated columns, default sequences and inheritance copy as on the source; a failed copy lowers the fence at once and resumes', async () => {
  f = await startMoverFixture('mover_unsh_copy', 2);
  for (const pool of f.pools) await pool.query(SCHEMA);
  await f.pools[0]!.query(SEED);
  const v1 = await f.init(2, 32);
  await f.seed(v1, 0, 20);

  // Every attempt's fence runs out before the switch (the hook expires it): the target's copies are cleared each time, and the result says so.
  const ranOut = await drainShard({
    catalog: f.catalogUrl,
    tables: TABLES,
    shardId: 'shard0',
    tuning: { cleanupDelayMillis: 10 },
    hook: async (_batch, point) => {
      if (point === 'unsharded-copied') await f.pools[0]!.query(`update kysely_scale.unsharded_fence set fenced_until = clock_timestamp() - interval '1 second'`);
    },
  });
  expect(ranOut.status).toBe('open');
  expect(ranOut.error!.message).toContain('did not settle');
  expect(ranOut.unsharded).toMatchObject({ phase: 'guarded', rowsCopied: 0, holderMoved: false });
  expect(await one(1, 'select count(*)::int as n from countries')).toEqual([{ n: 0 }]);

  // The target refuses one row (a constraint only it has; schemas compare columns and keys): the copy fails under the fence.
  await f.pools[1]!.query('alter table prices add constraint net_small check (net < 2)');
  const failed = await resumeMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 10, fenceTimeoutMillis: 60_000 } });
  expect(failed.status).toBe('open');
  expect(failed.error).toMatchObject({ code: 'E_MOVE_FAILED', context: { phase: 'fenced', sqlState: '23514' } });
  expect(failed.error!.message).toContain('The fence was lowered');
  expect(failed.unsharded).toMatchObject({ phase: 'fenced', rowsCopied: 0, holderMoved: false });
  expect(await one(1, 'select count(*)::int as n from countries')).toEqual([{ n: 0 }]);
  // Writers of the old holder go through at once, not after fenceTimeoutMillis (60 s here).
  expect(await one(0, 'select count(*)::int as n from kysely_scale.unsharded_fence where fenced_until > clock_timestamp()')).toEqual([{ n: 0 }]);
  const catalog = new TopologyCatalog({ url: f.catalogUrl });
  const current = (await catalog.latest())!;
  await catalog.close();
  const app = directClient({ connectionString: f.appUrl(0) });
  await app.connect();
  try {
    await app.query('select set_config($1, $2, false)', [TOPOLOGY_VERSION_SETTING, String(current.version)]);
    await app.query(`insert into countries values ('DE', 'Germany')`);
  } finally {
    await app.end();
  }

  await f.pools[1]!.query('alter table prices drop constraint net_small');
  const resumed = await resumeMove({ catalog: f.catalogUrl, tuning: { cleanupDelayMillis: 10 } });
  expect(resumed.error).toBeNull();
  // 2 countries, 1 city, 5 tickets, 2 items, 2 audit rows, 2 prices, 1 animal, 1 dog: each table's own rows once.
  expect(resumed.unsharded).toMatchObject({ phase: 'cleaned', target: 'shard1', rowsCopied: 16, holderMoved: true });

  // The foreign key's child came before its parent, and the audit trigger did not fire again.
  expect(await one(1, 'select country_code, name from cities')).toEqual([{ country_code: 'FR', name: 'Paris' }]);
  expect(await one(1, 'select code from countries order by code')).toEqual([{ code: 'DE' }, { code: 'FR' }]);
  expect(await one(1, 'select what from audit order by id')).toEqual([{ what: 'item 1' }, { what: 'item 2' }]);
  // Generated columns computed by the target (after a dropped column).
  expect(await one(1, 'select net, note, gross from prices order by id')).toEqual([
    { net: 1, note: 'one', gross: 2 },
    { net: 2, note: 'two', gross: 4 },
  ]);
  // A parent's own rows only: the child's row is copied once, with the child.
  expect(await one(1, 'select (select count(*)::int from only animals) as animals, (select count(*)::int from dogs) as dogs, (select count(*)::int from animals) as every')).toEqual([
    { animals: 1, dogs: 1, every: 2 },
  ]);
  // Sequences moved up: the one named only by a default, serials, and the audit's (written by a trigger).
  expect(await one(1, `insert into tickets (t) values ('new') returning id::int`)).toEqual([{ id: 6 }]);
  expect(await one(1, `insert into items (name) values ('c') returning id`)).toEqual([{ id: 3 }]);
  expect(await one(1, `select max(id)::int as id from audit`)).toEqual([{ id: 3 }]);
  expect(await one(1, `insert into cities (country_code, name) values ('DE', 'Berlin') returning id`)).toEqual([{ id: 2 }]);
}, 60_000);
