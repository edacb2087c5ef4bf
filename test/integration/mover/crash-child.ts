/** A mover process that kills itself (SIGKILL) when batch 1 reaches `point`: argv catalogUrl point slots target [maxRowsPerSecond ('' for none)] [batchSlots]. */
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { TABLES } from './mover-fixture';

const [catalog, point, slots, to, max, batchSlots] = process.argv.slice(2) as [string, string, string, string, string | undefined, string | undefined];
void moveSlots({
  catalog,
  tables: TABLES,
  slots,
  to,
  ...(max === undefined || max === '' ? {} : { maxRowsPerSecond: Number(max) }),
  ...(batchSlots === undefined ? {} : { tuning: { batchSlots: Number(batchSlots) } }),
  hook: (batch, at) => {
    if (batch.index === 0 && at === point) process.kill(process.pid, 'SIGKILL');
  },
}).then((result) => {
  process.stdout.write(JSON.stringify(result));
  process.exit(2); // it should have died before finishing
});
