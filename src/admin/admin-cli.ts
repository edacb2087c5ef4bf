#!/usr/bin/env node
/**
 * `kysely-scale-admin`: operator commands over the topology catalog. A thin shell: it parses,
 * calls the library function, prints its result (every URL redacted) and sets the exit code:
 * 0 done, 1 the operation failed (the error's code is printed), 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { redactText } from '../kernel/redact';
import { catalogStatus, initCatalog, parseShardArgument, type CatalogStatus } from './admin-commands';

export const ADMIN_USAGE = `Usage: kysely-scale-admin <command> --catalog <url> [options]

Commands:
  init     create the catalog and publish version 1
           --shard id=primaryUrl[,replicaUrl…]   (once per shard, in order)
           --slots <n>                            slot count (default 4096)
  status   the latest topology: shards, servers, slots owned, recent versions
           --history <n>                          versions to list (default 5)

Options:
  --catalog <url>   catalog database (or KYSELY_SCALE_CATALOG)
  --json            print the result as JSON
  --help`;

async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        catalog: { type: 'string' },
        shard: { type: 'string', multiple: true },
        slots: { type: 'string' },
        history: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    return usage(redactText((error as Error).message));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(`${ADMIN_USAGE}\n`);
    return 0;
  }
  const [command, ...extra] = positionals;
  const catalog = values.catalog ?? process.env.KYSELY_SCALE_CATALOG;
  if (command === undefined || extra.length > 0) return usage('Give exactly one command.');
  if (catalog === undefined || catalog === '') return usage('--catalog <url> (or KYSELY_SCALE_CATALOG) is required.');
  if (!/^postgres(ql)?:\/\//.test(catalog)) return usage('--catalog takes a postgres:// URL.');
  const json = values.json === true;
  switch (command) {
    case 'init': {
      let shards;
      try {
        shards = (values.shard ?? []).map(parseShardArgument);
      } catch (error) {
        return usage((error as Error).message);
      }
      if (shards.length === 0) return usage('init needs at least one --shard id=primaryUrl.');
      const slots = values.slots === undefined ? undefined : Number(values.slots);
      if (slots !== undefined && (!Number.isInteger(slots) || slots < 1)) return usage('--slots takes a positive whole number.');
      const result = await initCatalog(catalog, shards, slots);
      print(json, result, `Catalog ${result.catalog}: published topology version ${result.version} (${result.shards} shards, ${result.slotCount} slots).`);
      return 0;
    }
    case 'status': {
      const history = values.history === undefined ? 5 : Number(values.history);
      if (!Number.isInteger(history) || history < 0) return usage('--history takes a whole number.');
      const status = await catalogStatus(catalog, history);
      print(json, status, formatStatus(status));
      return 0;
    }
    default:
      return usage(`Unknown command "${command}".`);
  }
}

function formatStatus(status: CatalogStatus): string {
  if (status.version === null) return `Catalog ${status.catalog}: no topology published yet (run init).`;
  const lines = [`Catalog ${status.catalog}: topology version ${status.version}, ${status.slotCount} slots`];
  for (const shard of status.shards) {
    lines.push(`  ${shard.id}  ${shard.slots} slots  primary ${shard.primary}${shard.replicas.length === 0 ? '' : `  replicas ${shard.replicas.join(', ')}`}`);
  }
  lines.push('Versions:');
  for (const h of status.history) lines.push(`  ${h.version}  ${h.publishedAt.toISOString()}${h.note === null ? '' : `  ${h.note}`}`);
  return lines.join('\n');
}

function print(json: boolean, result: unknown, text: string): void {
  process.stdout.write(`${json ? JSON.stringify(result, null, 2) : text}\n`);
}

function usage(problem: string): number {
  // A problem may quote an argument, and an argument may be a URL with a password.
  process.stderr.write(`${redactText(problem)}\n\n${ADMIN_USAGE}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const code = typeof (error as { code?: unknown } | null)?.code === 'string' ? `${(error as { code: string }).code}: ` : '';
    process.stderr.write(`${code}${redactText(error instanceof Error ? error.message : String(error))}\n`);
    process.exit(1);
  },
);
