/**
 * `npm run bench -- <suite>`: runs bench/<suite>.bench.ts (never part of `npm test`), which prints
 * its table and writes bench/results/<suite>.json.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

async function main(): Promise<void> {
  const suites = readdirSync(__dirname).filter((f) => f.endsWith('.bench.ts')).map((f) => f.replace('.bench.ts', ''));
  const suite = process.argv[2];
  if (suite === undefined || !suites.includes(suite)) {
    process.stderr.write(`usage: npm run bench -- <suite>\nsuites: ${suites.join(', ')}\n`);
    process.exit(2);
  }
  const module = (await import(join(__dirname, `${suite}.bench.ts`))) as { run(): Promise<{ pass: boolean }> };
  const report = await module.run();
  process.stdout.write(`${suite}: targets ${report.pass ? 'met' : 'NOT met'}\n`);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
