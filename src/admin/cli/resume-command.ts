import { resumeMove } from '../mover/move-control';
import { MOVE_FLAGS, MOVE_USAGE, runMoveCommand } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `resume`: finish the open move from where it stopped. */
export const resumeCommand: CliCommand = {
  summary: 'finish an interrupted move from where it stopped',
  usage: MOVE_USAGE.filter((l) => !l.startsWith('--dry-run')),
  options: { ...MOVE_FLAGS },
  needsCatalog: true,
  async run(values, context) {
    return runMoveCommand(values, context, resumeMove);
  },
};
