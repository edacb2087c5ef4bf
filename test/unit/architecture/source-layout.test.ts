/**
 * The source tree stays readable: the design card's folders exist, and no source file grows past
 * about 400 lines unless its opening comment says why (a sentence containing "longer than 400 lines").
 */
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';

const src = join(__dirname, '../../../src');
const MAX_LINES = 400;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
  });
}

describe('source layout', () => {
  it("keeps the design card's top-level folders", () => {
    for (const folder of ['kernel', 'cluster', 'balancer', 'replication', 'sharding', 'cache', 'admin', 'testing']) {
      expect(existsSync(join(src, folder))).toBe(true);
    }
    expect(existsSync(join(src, 'replicas'))).toBe(false);
  });

  it(`has no source file over ${MAX_LINES} lines without a stated reason`, () => {
    const tooLong = sourceFiles(src)
      .map((path) => ({ path: relative(src, path), text: readFileSync(path, 'utf8') }))
      .filter(({ text }) => text.split('\n').length > MAX_LINES)
      .filter(({ text }) => !/longer than 400 lines/i.test(text.slice(0, 1500)))
      .map(({ path }) => path);
    expect(tooLong).toEqual([]);
  });
});
