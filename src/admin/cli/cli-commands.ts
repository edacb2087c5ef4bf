/** Every command of `kysely-scale-admin`, in the order the usage text lists them. Add a command here. */
import type { CliCommand } from './cli-command';
import { initCommand } from './init-command';
import { migrateCommand } from './migrate-command';
import { statusCommand } from './status-command';
import { addCommand } from './add-command';
import { drainCommand } from './drain-command';
import { moveCommand } from './move-command';
import { rebalanceCommand } from './rebalance-command';
import { verifyCommand } from './verify-command';
import { resumeCommand } from './resume-command';
import { abortCommand } from './abort-command';
import { movesCommand } from './moves-command';
import { dashboardCommand } from './dashboard-command';

export const CLI_COMMANDS: Readonly<Record<string, CliCommand>> = Object.freeze({
  init: initCommand,
  status: statusCommand,
  migrate: migrateCommand,
  add: addCommand,
  drain: drainCommand,
  move: moveCommand,
  rebalance: rebalanceCommand,
  verify: verifyCommand,
  resume: resumeCommand,
  abort: abortCommand,
  moves: movesCommand,
  dashboard: dashboardCommand,
});
