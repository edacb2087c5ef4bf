import { drainShard } from '../mover/mover-operations';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand, requiredFlag } from '../mover/move-command-support';
import { stringFlag, type CliCommand } from './cli-command';

/** `drain`: move every slot (and the unsharded tables, when it holds them) off a shard, then remove it. */
export const drainCommand: CliCommand = {
  summary: 'move every slot (and the unsharded tables, if it holds them) off a shard, then remove it from the topology',
  usage: [
    '--shard <id>                           the shard to drain',
    '--unsharded-to <id>                    where its unsharded tables go, if it holds them (default: the shard that will own the most slots)',
    "--unsharded-from <id>                  the shard holding the unsharded tables when the catalog records none (your apps' unshardedShardId; default the first shard)",
    ...MOVE_USAGE,
  ],
  options: { ...MOVE_FLAGS, shard: { type: 'string' }, 'unsharded-to': { type: 'string' }, 'unsharded-from': { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const shardId = requiredFlag(values, 'shard', 'drain');
    const unshardedTo = stringFlag(values, 'unsharded-to');
    const unshardedFrom = stringFlag(values, 'unsharded-from');
    return runMoveCommand(values, context, (options) => drainShard({ ...options, shardId, ...(unshardedTo === undefined ? {} : { unshardedTo }), ...(unshardedFrom === undefined ? {} : { unshardedFrom }) }));
  },
};
