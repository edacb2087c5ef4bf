import { abortMove } from '../mover/move-control';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `abort`: roll the open move back (batches already published are finished instead). */
export const abortCommand: CliCommand = {
  summary: 'roll an interrupted move back and lift its fences (published batches are finished)',
  // The tuning and deadline flags (the back-out copies nothing, but deletes, pauses and waits on shards); no plan, no tables.
  usage: MOVE_USAGE.filter((l) => !l.startsWith('--dry-run') && !l.startsWith('--table')),
  options: Object.fromEntries(Object.entries(MOVE_FLAGS).filter(([name]) => name !== 'dry-run' && name !== 'table')),
  needsCatalog: true,
  async run(values, context) {
    return runMoveCommand(values, context, abortMove);
  },
};
