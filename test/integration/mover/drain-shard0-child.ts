/** A drain of shard0 in a process of its own (argv: the catalog's URL), for tests that kill it (-9) part-way. */
import { drainShard } from '../../../src/admin/mover/mover-operations';
import { TABLES } from './mover-fixture';

const [catalog] = process.argv.slice(2) as [string];
void drainShard({ catalog, tables: TABLES, shardId: 'shard0', tuning: { cleanupDelayMillis: 0 } }).then((result) => {
  process.stdout.write(JSON.stringify(result));
  process.exit(2);
});
