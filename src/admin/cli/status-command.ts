import { catalogStatus, type CatalogStatus } from '../admin-commands';
import { migrationTableFlags, MIGRATION_TABLE_OPTIONS, MIGRATION_TABLE_USAGE } from './migration-flags';
import { integerFlag, plural, type CliCommand } from './cli-command';

/** `status`: the latest topology, its shards, their migrations and recent versions. */
export const statusCommand: CliCommand = {
  summary: "the latest topology: shards, servers, slots owned, each shard's latest migration (drift flagged), recent versions",
  usage: ['--history <n>                          versions to list (default 5)', ...MIGRATION_TABLE_USAGE],
  options: { history: { type: 'string' }, ...MIGRATION_TABLE_OPTIONS },
  needsCatalog: true,
  async run(values, context) {
    const status = await catalogStatus(context.catalog!, { historyLimit: integerFlag(values, 'history', 0, 5), migrations: migrationTableFlags(values) });
    // Drift between shards, or a shard that cannot be read, is a problem to act on.
    const problem = status.migrations !== null && (status.migrations.drift || status.migrations.unreadable);
    return { result: status, text: formatStatus(status), exitCode: problem ? 1 : 0 };
  },
};

function formatStatus(status: CatalogStatus): string {
  if (status.version === null) return `Catalog ${status.catalog}: no topology published yet (run init).`;
  const lines = [`Catalog ${status.catalog}: topology version ${status.version}, ${plural(status.slotCount ?? 0, 'slot')}`];
  const migrations = new Map((status.migrations?.shards ?? []).map((m) => [m.shardId, m]));
  for (const shard of status.shards) {
    const m = migrations.get(shard.id);
    const migration =
      m === undefined ? '' : m.error !== undefined ? `  migrations unreadable: ${m.error}` : `  migration ${m.latest ?? '(none)'}${m.missing.length === 0 ? '' : ` — DRIFT: lacks ${m.missing.join(', ')}`}`;
    lines.push(`  ${shard.id}  ${plural(shard.slots, 'slot')}  primary ${shard.primary}${shard.replicas.length === 0 ? '' : `  replicas ${shard.replicas.join(', ')}`}${migration}`);
  }
  if (status.migrations?.drift === true) lines.push('Migrations drifted: some shards lack migrations others have run (run kysely-scale-admin migrate).');
  lines.push('Versions:');
  for (const h of status.history) lines.push(`  ${h.version}  ${h.publishedAt.toISOString()}${h.note === null ? '' : `  ${h.note}`}`);
  return lines.join('\n');
}
