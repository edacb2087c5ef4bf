import { drainShard } from '../mover/mover-operations';
import { MOVE_FLAGS, MOVE_USAGE, moveOutcome, moverOptions, requiredFlag } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `drain`: move every slot off a shard, then remove it. */
export const drainCommand: CliCommand = {
  summary: 'move every slot off a shard evenly to the others, then remove it from the topology',
  usage: ['--shard <id>                           the shard to drain', ...MOVE_USAGE],
  options: { ...MOVE_FLAGS, shard: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const shardId = requiredFlag(values, 'shard', 'drain');
    const { options, stop } = moverOptions(values, context);
    try {
      return moveOutcome(await drainShard({ ...options, shardId }));
    } finally {
      stop();
    }
  },
};
