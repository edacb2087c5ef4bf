/**
 * Every pg Client and Pool listens for 'error'. pg emits it when a server drops a connection no
 * statement is waiting on (a shutdown, a failover, a terminated backend); without a listener that
 * is an uncaught exception that ends the process, or in Jest the worker, blamed on whichever test
 * file it runs at the time. Source files attach the listener next to the constructor; tests make
 * their connections through test/support/direct-pool.ts, which does.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = join(__dirname, '../../..');
const CONSTRUCTOR = /\bnew (Client|Pool)\(/;
// Lines after a constructor in which its 'error' listener must be attached.
const WITHIN_LINES = 16;

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

function constructors(file: string): { line: number; text: string; lines: string[] }[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  return lines.flatMap((text, i) => (CONSTRUCTOR.test(text) ? [{ line: i + 1, text: text.trim(), lines }] : []));
}

describe('pg error listeners', () => {
  it('every Client and Pool in src listens for errors right after it is made', () => {
    const missing = files(join(root, 'src')).flatMap((file) =>
      constructors(file)
        .filter(({ line, lines }) => !lines.slice(line - 1, line - 1 + WITHIN_LINES).some((l) => l.includes(".on('error'")))
        .map(({ line, text }) => `${relative(root, file)}:${line} ${text}`),
    );
    expect(missing).toEqual([]);
  });

  it('tests make their connections through test/support (directClient, directPool), which listen', () => {
    // Code a test writes into a child process's script, not run by Jest.
    const childScripts = new Set(['test/integration/admin/catalog-publish-outcome.test.ts']);
    const direct = files(join(root, 'test'))
      .filter((file) => !relative(root, file).startsWith('test/support/') && !childScripts.has(relative(root, file)))
      .flatMap((file) => constructors(file).map(({ line, text }) => `${relative(root, file)}:${line} ${text}`));
    expect(direct).toEqual([]);
  });
});
