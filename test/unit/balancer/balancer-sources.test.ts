import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Every .ts file under a folder, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : name.endsWith('.ts') ? [path] : [];
  });
}

/** A file's code without comments and string literals (error messages may name functions). */
const code = (file: string): string =>
  readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, "''");

describe('balancer sources', () => {
  it('strategies take time and randomness only from what is injected: no Date.now(), performance.now() or Math.random()', () => {
    const dir = join(__dirname, '../../../src/balancer/strategies');
    for (const file of readdirSync(dir)) {
      expect(`${file}: ${/Date\.now\(|performance\.now\(|Math\.random\(/.test(code(join(dir, file)))}`).toBe(`${file}: false`);
    }
  });

  it('the balancer measures time only through the injected clock: no Date.now(), performance.now() or raw timers', () => {
    const root = join(__dirname, '../../../src/balancer');
    for (const file of sources(root)) {
      // `clock.setTimeout(...)` is the injected clock; a bare `setTimeout(` / `setInterval(` is a raw timer.
      const found = /Date\.now\(|performance\.now\(|(?<![.\w])setTimeout\(|setInterval\(/.test(code(file));
      expect(`${file.slice(root.length + 1)}: ${found}`).toBe(`${file.slice(root.length + 1)}: false`);
    }
  });
});
