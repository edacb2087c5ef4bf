import { rebalanceShards } from '../mover/mover-operations';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `rebalance`: even out slot counts. */
export const rebalanceCommand: CliCommand = {
  summary: 'even out the slot counts of the shards',
  usage: MOVE_USAGE,
  options: { ...MOVE_FLAGS },
  needsCatalog: true,
  async run(values, context) {
    return runMoveCommand(values, context, rebalanceShards);
  },
};
