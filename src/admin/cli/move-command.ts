import { moveSlots } from '../mover/mover-operations';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand, requiredFlag, slotsFlag } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `move`: move slot ranges to a shard. */
export const moveCommand: CliCommand = {
  summary: 'move slot ranges to a shard',
  usage: ['--slots <ranges>                       slots to move (0-99,200)', '--to <id>                              the shard that will own them', ...MOVE_USAGE],
  options: { ...MOVE_FLAGS, slots: { type: 'string' }, to: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const slots = slotsFlag(values) ?? requiredFlag(values, 'slots', 'move');
    const to = requiredFlag(values, 'to', 'move');
    return runMoveCommand(values, context, (options) => moveSlots({ ...options, slots, to }));
  },
};
