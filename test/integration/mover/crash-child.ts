/** A mover process that kills itself (SIGKILL) when batch 1 reaches `point`: argv catalogUrl point slots target [maxRowsPerSecond]. */
import { moveSlots } from '../../../src/admin/mover/mover-operations';
import { TABLES } from './mover-fixture';

const [catalog, point, slots, to, max] = process.argv.slice(2) as [string, string, string, string, string | undefined];
void moveSlots({
  catalog,
  tables: TABLES,
  slots,
  to,
  ...(max === undefined ? {} : { maxRowsPerSecond: Number(max) }),
  hook: (batch, at) => {
    if (batch.index === 0 && at === point) process.kill(process.pid, 'SIGKILL');
  },
}).then((result) => {
  process.stdout.write(JSON.stringify(result));
  process.exit(2); // it should have died before finishing
});
