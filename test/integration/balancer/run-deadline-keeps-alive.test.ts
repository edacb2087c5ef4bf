/**
 * A process whose only pending work is `Balancer.run()` of a function that waits on nothing
 * holding the event loop stays alive until the call's deadline: it prints the coded timeout and
 * exits 0 on its own. Before, the deadline's only handle was an unref'd timer and the process
 * exited in the middle of the await (code 13, "unsettled top-level await"), skipping its error
 * handling. Found by an outside-in test of the packed library.
 */
import { runTsxScript, srcModule } from '../../support/tsx-script';

test("a run() whose function hangs on nothing keeps the process alive until its deadline rejects it", async () => {
  const { stdout, stderr, code } = await runTsxScript(
    `import { Balancer } from ${srcModule('balancer/balancer')};
const balancer = new Balancer({ instances: [{ id: 'a', address: 'x' }] });
void (async () => {
  const started = performance.now();
  const error = await balancer.run(() => new Promise<never>(() => undefined), { timeoutMillis: 300 }).catch((e: { code?: string }) => e);
  process.stdout.write(JSON.stringify({ code: (error as { code?: string }).code, tookAtLeast300: performance.now() - started >= 299 }) + '\\n');
})();
`,
    30_000,
  );
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  expect(JSON.parse(stdout)).toEqual({ code: 'E_REQUEST_TIMEOUT', tookAtLeast300: true });
}, 40_000);
