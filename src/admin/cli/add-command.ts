import { parseShardArgument } from '../admin-commands';
import { addShard } from '../mover/mover-operations';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand, requiredFlag, slotsFlag } from '../mover/move-command-support';
import { CliUsageError, stringFlag, type CliCommand } from './cli-command';
import { MIGRATION_TABLE_OPTIONS, MIGRATION_TABLE_USAGE, migrationTableFlags } from './migration-flags';

/** `add`: register a shard and move an equal share of slots (or --slots) to it. */
export const addCommand: CliCommand = {
  summary: 'add a shard: check its schema, then move an equal share of slots (or --slots) to it',
  usage: [
    '--shard id=primaryUrl[,replicaUrl…]   the new shard',
    '--slots <ranges>                       slots to give it instead of an equal share (0-99,200)',
    '--migrations <folder>                  run the shards\' Kysely migrations on it first',
    ...MIGRATION_TABLE_USAGE,
    ...MOVE_USAGE,
  ],
  options: { ...MOVE_FLAGS, ...MIGRATION_TABLE_OPTIONS, shard: { type: 'string' }, slots: { type: 'string' }, migrations: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    let shard;
    try {
      shard = parseShardArgument(requiredFlag(values, 'shard', 'add'));
    } catch (error) {
      throw new CliUsageError((error as Error).message);
    }
    const slots = slotsFlag(values);
    const folder = stringFlag(values, 'migrations');
    const migrations = folder === undefined ? {} : { migrations: { migrationFolder: folder, ...migrationTableFlags(values) } };
    return runMoveCommand(values, context, (options) => addShard({ ...options, shard, ...(slots === undefined ? {} : { slots }), ...migrations }));
  },
};
