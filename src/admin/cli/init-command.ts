import { initCatalog, parseShardArgument } from '../admin-commands';
import { CliUsageError, integerFlag, plural, stringsFlag, type CliCommand } from './cli-command';

/** `init`: check the servers, create the catalog and publish version 1. */
export const initCommand: CliCommand = {
  summary: 'check every server, create the catalog and publish version 1',
  usage: [
    '--shard id=primaryUrl[,replicaUrl…]   (once per shard, in order)',
    '--slots <n>                            slot count (default 4096)',
    '--skip-checks                          publish without checking that primaries are primaries',
    '                                       and replicas stream from them',
  ],
  options: { shard: { type: 'string', multiple: true }, slots: { type: 'string' }, 'skip-checks': { type: 'boolean' } },
  needsCatalog: true,
  async run(values, context) {
    let shards;
    try {
      shards = stringsFlag(values, 'shard').map(parseShardArgument);
    } catch (error) {
      throw new CliUsageError((error as Error).message);
    }
    if (shards.length === 0) throw new CliUsageError('init needs at least one --shard id=primaryUrl.');
    const slotCount = integerFlag(values, 'slots', 1);
    const result = await initCatalog(context.catalog!, shards, { ...(slotCount === undefined ? {} : { slotCount }), checkServers: values['skip-checks'] !== true });
    return {
      result,
      text: [
        `Catalog ${result.catalog}: published topology version ${result.version} (${plural(result.shards, 'shard')}, ${plural(result.slotCount, 'slot')}).`,
        ...result.identityProblems.map((p) => `Warning: the replica identity of shard "${p.shard}" could not be written on its primary (${p.problem}); its replicas serve no reads until a role with CREATE on the database writes it: every move's start does, as does a dialect's first check when its role may (README: Identity).`),
      ].join('\n'),
      exitCode: 0,
    };
  },
};
