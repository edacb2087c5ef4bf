import { catalogStatus, type CatalogStatus } from '../admin-commands';
import { integerFlag, plural, type CliCommand } from './cli-command';

/** `status`: the latest topology, its shards and recent versions. */
export const statusCommand: CliCommand = {
  summary: 'the latest topology: shards, servers, slots owned, recent versions',
  usage: ['--history <n>                          versions to list (default 5)'],
  options: { history: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const status = await catalogStatus(context.catalog!, integerFlag(values, 'history', 0, 5));
    return { result: status, text: formatStatus(status), exitCode: 0 };
  },
};

function formatStatus(status: CatalogStatus): string {
  if (status.version === null) return `Catalog ${status.catalog}: no topology published yet (run init).`;
  const lines = [`Catalog ${status.catalog}: topology version ${status.version}, ${plural(status.slotCount ?? 0, 'slot')}`];
  for (const shard of status.shards) {
    lines.push(`  ${shard.id}  ${plural(shard.slots, 'slot')}  primary ${shard.primary}${shard.replicas.length === 0 ? '' : `  replicas ${shard.replicas.join(', ')}`}`);
  }
  lines.push('Versions:');
  for (const h of status.history) lines.push(`  ${h.version}  ${h.publishedAt.toISOString()}${h.note === null ? '' : `  ${h.note}`}`);
  return lines.join('\n');
}
