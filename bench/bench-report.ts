/**
 * Benchmark reports: the JSON shape of ARCHITECTURE.md, written to bench/results/<suite>.json,
 * and a printed table. Ratios are against a baseline measured in the same run; absolute figures
 * are reported beside them and never asserted.
 */
import { cpus } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One suite's report. */
export interface BenchReport {
  readonly suite: string;
  readonly date: string;
  readonly node: string;
  readonly cpus: number;
  readonly results: Readonly<Record<string, number>>;
  readonly ratios: Readonly<Record<string, number>>;
  readonly targets: Readonly<Record<string, number>>;
  readonly pass: boolean;
}

/** Fills in the environment fields of a report. */
export function makeReport(
  suite: string,
  figures: Pick<BenchReport, 'results' | 'ratios' | 'targets' | 'pass'>,
): BenchReport {
  return {
    suite,
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    ...figures,
  };
}

function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toPrecision(4);
}

/** Prints the report as a table and writes bench/results/<suite>.json; returns the file path. */
export async function writeReport(report: BenchReport): Promise<string> {
  const rows: Array<[string, string, string]> = [];
  for (const [k, v] of Object.entries(report.results)) rows.push(['result', k, format(v)]);
  for (const [k, v] of Object.entries(report.ratios)) rows.push(['ratio', k, format(v)]);
  for (const [k, v] of Object.entries(report.targets)) rows.push(['target', k, format(v)]);
  const w0 = Math.max(...rows.map((r) => r[0].length), 6);
  const w1 = Math.max(...rows.map((r) => r[1].length), 4);
  const lines = [`${report.suite} (${report.node}, ${report.cpus} cpus, ${report.date})`];
  for (const [kind, name, value] of rows) lines.push(`${kind.padEnd(w0)}  ${name.padEnd(w1)}  ${value}`);
  lines.push(`pass: ${report.pass}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const dir = join(__dirname, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${report.suite}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
