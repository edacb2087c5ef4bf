/** A drain of shard0 that kills itself (SIGKILL) when its unsharded step reaches `point`: argv catalogUrl point. */
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { TABLES } from './mover-fixture';

const [catalog, point] = process.argv.slice(2) as [string, string];
void drainShard({
  catalog,
  tables: TABLES,
  shardId: 'shard0',
  tuning: { cleanupDelayMillis: 0 },
  hook: (_batch, at) => {
    if (at === point) process.kill(process.pid, 'SIGKILL');
  },
}).then((result) => {
  process.stdout.write(JSON.stringify(result));
  process.exit(2); // it should have died before finishing
});
