import { catalogStatus, type CatalogStatus } from '../admin-commands';
import { liveStatus, LIVE_STATUS_DEFAULTS } from '../live-status';
import { migrationTableFlags, MIGRATION_TABLE_OPTIONS, MIGRATION_TABLE_USAGE } from './migration-flags';
import { integerFlag, plural, type CliCommand, type CliContext, type CliOutcome, type CliValues } from './cli-command';
import { formatLiveStatus } from './live-status-text';

/** `status`: the latest topology, its shards, their migrations and recent versions, and every server checked now. */
export const statusCommand: CliCommand = {
  summary: `the latest topology: shards, servers, slots owned, each shard's latest migration (drift flagged), recent versions; each server checked now (reachable, role, lag, rows counted or sampled now from about ${LIVE_STATUS_DEFAULTS.rowSamplePages} pages a shard, moves in progress)`,
  usage: [
    '--history <n>                          versions to list (default 5)',
    `--timeout <ms>                         deadline of each server's check (default ${LIVE_STATUS_DEFAULTS.timeoutMillis})`,
    '--no-live                              only what the catalog holds; no server is contacted',
    '--watch                                check again every --interval seconds until interrupted (Ctrl-C)',
    '--interval <s>                         seconds between --watch rounds (default 2)',
    '--count <n>                            with --watch: stop after n rounds',
    ...MIGRATION_TABLE_USAGE,
  ],
  options: {
    history: { type: 'string' },
    timeout: { type: 'string' },
    'no-live': { type: 'boolean' },
    watch: { type: 'boolean' },
    interval: { type: 'string' },
    count: { type: 'string' },
    ...MIGRATION_TABLE_OPTIONS,
  },
  needsCatalog: true,
  async run(values, context) {
    if (values.watch !== true) return statusOnce(values, context);
    const intervalMillis = integerFlag(values, 'interval', 1, 2) * 1000;
    const count = integerFlag(values, 'count', 1);
    let stopped = false;
    let wake: (() => void) | undefined;
    const stop = (): void => {
      stopped = true;
      wake?.();
    };
    process.once('SIGINT', stop);
    try {
      for (let round = 1; ; round++) {
        const outcome = await statusOnce(values, context);
        if (stopped || round === count) return outcome;
        // Every round but the last is printed here; the CLI prints the one returned.
        const clear = context.json || process.stdout.isTTY !== true ? '' : '\x1b[2J\x1b[H';
        process.stdout.write(`${clear}${context.json ? JSON.stringify(outcome.result) : outcome.text}\n${context.json ? '' : '\n'}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, intervalMillis);
        });
        if (stopped) return outcome;
      }
    } finally {
      process.off('SIGINT', stop);
    }
  },
};

async function statusOnce(values: CliValues, context: CliContext): Promise<CliOutcome> {
  const timeoutMillis = integerFlag(values, 'timeout', 1, LIVE_STATUS_DEFAULTS.timeoutMillis);
  const live = values['no-live'] === true ? undefined : liveStatus(context.catalog!, { timeoutMillis, migrations: false });
  const status = await catalogStatus(context.catalog!, { historyLimit: integerFlag(values, 'history', 0, 5), migrations: migrationTableFlags(values) });
  const checked = await live;
  // Drift between shards, a shard that cannot be read, or a server that does not answer as the topology says is a problem to act on.
  const problem = (status.migrations !== null && (status.migrations.drift || status.migrations.unreadable)) || (checked !== undefined && checked.problems.length > 0 && status.version !== null);
  const text = checked === undefined || status.version === null ? formatStatus(status) : `${formatStatus(status)}\n${formatLiveStatus(checked)}`;
  return { result: checked === undefined ? status : { ...status, live: checked }, text, exitCode: problem ? 1 : 0 };
}

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
