import { abortMove } from '../mover/move-control';
import { runMoveCommand } from '../mover/move-command-support';
import type { CliCommand } from './cli-command';

/** `abort`: roll the open move back (batches already published are finished instead). */
export const abortCommand: CliCommand = {
  summary: 'roll an interrupted move back and lift its fences (published batches are finished)',
  usage: [],
  options: {},
  needsCatalog: true,
  async run(values, context) {
    return runMoveCommand(values, context, abortMove);
  },
};
