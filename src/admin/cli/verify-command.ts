import { verifyShards, type VerifyResult } from '../mover/shard-verify';
import { CliUsageError, integerFlag, plural, stringsFlag, type CliCommand } from './cli-command';
import { DEADLINE_FLAGS, DEADLINE_USAGE, deadlineTuning } from '../mover/move-command-support';

/** `verify`: every row on the shard that owns its slot; counts and checksums per slot per table. */
export const verifyCommand: CliCommand = {
  summary: 'check that every row is on the shard owning its slot (counts and checksums per slot per table)',
  usage: [
    '--table name=keyColumn                 a sharded table (once each; remembered in the catalog)',
    "--lock-timeout-ms <n>                  wait at most this for a table's lock (a migration's), then stop naming who holds it (default 5000)",
    ...DEADLINE_USAGE,
  ],
  options: { table: { type: 'string', multiple: true }, 'lock-timeout-ms': { type: 'string' }, ...DEADLINE_FLAGS },
  needsCatalog: true,
  async run(values, context) {
    const tables: Record<string, string> = {};
    for (const text of stringsFlag(values, 'table')) {
      const eq = text.indexOf('=');
      if (eq <= 0) throw new CliUsageError(`--table takes name=keyColumn; got ${JSON.stringify(text)}.`);
      tables[text.slice(0, eq)] = text.slice(eq + 1);
    }
    const lockTimeoutMillis = integerFlag(values, 'lock-timeout-ms', 1);
    const result = await verifyShards({
      catalog: context.catalog!,
      ...(Object.keys(tables).length > 0 ? { tables } : {}),
      ...(lockTimeoutMillis === undefined ? {} : { lockTimeoutMillis }),
      tuning: deadlineTuning(values),
    });
    return { result, text: verifyText(result), exitCode: result.ok ? 0 : 1 };
  },
};

function verifyText(r: VerifyResult): string {
  if (r.error !== null) return `${r.error.code}: ${r.error.message}`;
  const problems = [
    ...(r.misplaced.length > 0 ? [`${plural(r.misplaced.length, 'slot')} with rows on a shard that does not own it`] : []),
    ...(r.unplaceable.length > 0 ? [`${plural(r.unplaceable.reduce((n, u) => n + u.rows, 0), 'row')} with a NULL shard key (no slot owns them)`] : []),
  ];
  const lines = [`Topology version ${r.version}: ${r.ok ? 'every row is on the shard that owns its slot' : problems.join('; ')}`];
  for (const t of r.tables) lines.push(`  ${t.name}  ${plural(t.rows, 'row')} in ${plural(t.slotsWithRows, 'slot')}`);
  for (const m of r.misplaced.slice(0, 20)) lines.push(`  misplaced: ${m.table} slot ${m.slot} on ${m.shard} (${plural(m.rows, 'row')})`);
  for (const u of r.unplaceable) lines.push(`  NULL shard key: ${u.table} on ${u.shard} (${plural(u.rows, 'row')}): set their keys, or delete them`);
  if (r.skippedSlots > 0) lines.push(`  ${plural(r.skippedSlots, 'slot')} of an unfinished move skipped`);
  return lines.join('\n');
}
