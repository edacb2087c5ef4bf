/** Exit codes and help of the move commands as operators and scheduled jobs see them (the CLI as a separate process). */
import { admin } from '../admin/admin-cli-process';
import { startMoverFixture, type MoverFixture } from './mover-fixture';

let f: MoverFixture;

beforeAll(async () => {
  f = await startMoverFixture('mover_cli_exits', 2);
  await f.seed(await f.init(2), 0, 50);
}, 150_000);

afterAll(() => f?.close());

test('rebalance of a balanced cluster succeeds with nothing to move (a scheduled job must not fail on it)', async () => {
  const text = await admin('rebalance', '--catalog', f.catalogUrl, '--table', 'users=id', '--table', 'orders=user_id');
  expect(text.code).toBe(0);
  expect(text.stdout).toContain('rebalance: Already balanced');
  expect(text.stdout).toContain('nothing to move');
  const json = await admin('rebalance', '--catalog', f.catalogUrl, '--json');
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, status: 'done', moveId: null, plan: { batches: [], slots: 0 }, error: null });
  const dry = await admin('rebalance', '--catalog', f.catalogUrl, '--dry-run');
  expect(dry.code).toBe(0);
  const moves = await admin('moves', '--catalog', f.catalogUrl, '--json');
  expect(JSON.parse(moves.stdout).moves).toEqual([]);
}, 60_000);

test.each([
  ['0x10', '"0x10"'],
  ['1e2', '"1e2"'],
  ['1,,2', 'empty part'],
  ['10-', '"10-"'],
  ['5-3', '"5-3" ends before it starts'],
])('a malformed --slots %j is a usage error (exit 2) naming the bad part', async (slots, named) => {
  const run = await admin('move', '--catalog', f.catalogUrl, '--slots', slots, '--to', 'shard1');
  expect(run.code).toBe(2);
  expect(run.stderr).toContain('--slots: ');
  expect(run.stderr).toContain(named);
  expect(run.stderr).toContain('kysely-scale-admin move --help');
}, 30_000);

test('a slot past the cluster is refused (exit 1), quoted as the operator wrote it', async () => {
  const run = await admin('move', '--catalog', f.catalogUrl, '--slots', '99999999999999999999', '--to', 'shard1');
  expect(run.code).toBe(1);
  expect(run.stdout).toContain('Slot 99999999999999999999 is out of range: this cluster has slots 0..4095.');
  const add = await admin('add', '--catalog', f.catalogUrl, '--shard', `x=${f.catalogUrl}`, '--slots', '0x10');
  expect(add.code).toBe(2);
  expect(add.stderr).toContain('"0x10"');
}, 30_000);

test('add --help prints add\'s help only', async () => {
  const help = await admin('add', '--help');
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('Usage: kysely-scale-admin add [options]');
  expect(help.stdout).toContain('--shard id=primaryUrl');
  expect(help.stdout).toContain('--catalog <url>');
  expect(help.stdout).not.toMatch(/\n {2}drain\s/);
  expect(help.stdout).not.toMatch(/\n {2}init\s/);
  const all = await admin('--help');
  expect(all.stdout).toMatch(/\n {2}drain\s/);
}, 30_000);
