#!/usr/bin/env node
/**
 * Command-line entry of the balancing proxy: `kysely-scale-proxy --upstream http://… `.
 * A thin shell: parse, start, print, reload the upstreams on SIGHUP, stop on SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProxyConfig, PROXY_USAGE } from './proxy-config';
import { startProxyFromConfig } from './proxy-start';
import { redactText } from '../../kernel/redact';
import type { ProxyConfig } from './proxy-config';

async function main(): Promise<void> {
  const config = await loadProxyConfig(process.argv.slice(2));
  if (config === 'help') {
    process.stdout.write(`${PROXY_USAGE}\n`);
    return;
  }
  if (config === 'version') {
    // dist/balancer/http or src/balancer/http: the package root is three folders up.
    const pkg = JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  const argv = process.argv.slice(2);
  const load = async (): Promise<ProxyConfig> => {
    const again = await loadProxyConfig(argv);
    if (again === 'help' || again === 'version') throw new Error(`--${again} is not a config`);
    return again;
  };
  const running = await startProxyFromConfig(config, { load });
  running.balancer
    .on('health-changed', (e) => process.stderr.write(`health ${e.instanceId}: ${e.healthy ? 'up' : 'down'} (${e.reason ?? ''})\n`))
    .on('ejected', (e) => process.stderr.write(`ejected ${e.instanceId} (ejection #${e.ejectionCount})\n`))
    .on('returned', (e) => process.stderr.write(`returned ${e.instanceId}\n`))
    .on('panic', (e) => process.stderr.write(`panic ${e.active ? 'on' : 'off'}: ${e.usable}/${e.total} usable\n`));
  process.stdout.write(
    `kysely-scale proxy on ${running.proxy.url} → ${running.balancer.instances().length} upstreams, strategy ${running.balancer.strategy.name}\n`,
  );
  if (running.admin !== undefined) process.stdout.write(`admin on ${running.admin.url}\n`);
  // SIGHUP re-reads the config file and flags and applies the upstreams; a bad file changes nothing.
  process.on('SIGHUP', () => {
    running.reload().then(
      (c) => process.stdout.write(`reloaded: +${c.added.length} -${c.removed.length} upstreams (${running.balancer.instances().length} now)\n`),
      (error: unknown) => process.stderr.write(`reload failed, upstreams unchanged: ${redactText(error instanceof Error ? error.message : String(error))}\n`),
    );
  });
  const stop = (): void => {
    void running.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${PROXY_USAGE}\n`);
  process.exit(2);
});
