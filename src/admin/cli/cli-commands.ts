/** Every command of `kysely-scale-admin`, in the order the usage text lists them. Add a command here. */
import type { CliCommand } from './cli-command';
import { initCommand } from './init-command';
import { statusCommand } from './status-command';

export const CLI_COMMANDS: Readonly<Record<string, CliCommand>> = Object.freeze({
  init: initCommand,
  status: statusCommand,
});
