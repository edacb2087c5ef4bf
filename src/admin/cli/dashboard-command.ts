import { startDashboard } from '../dashboard/dashboard-server';
import { integerFlag, stringFlag, type CliCommand } from './cli-command';

/** `dashboard`: serves the live dashboard page until interrupted. */
export const dashboardCommand: CliCommand = {
  summary: 'serve a live page: slot map, servers (health, role, lag, traffic), moves, cache hit ratios, balancer instances',
  usage: [
    '--redis <url>                          Redis the service instances publish their stats to (publishInstanceStats)',
    '--port <n>                             port (default: a free one)',
    '--host <address>                       address to listen on (default 127.0.0.1; anything else needs --token)',
    '--token <secret>                       required from every client (?token= or Authorization: Bearer)',
    '--interval <ms>                        time between updates (default 1000)',
  ],
  options: { redis: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' }, interval: { type: 'string' } },
  needsCatalog: true,
  async run(values, context) {
    const host = stringFlag(values, 'host');
    const token = stringFlag(values, 'token') ?? process.env.KYSELY_SCALE_DASHBOARD_TOKEN;
    const redis = stringFlag(values, 'redis');
    const dashboard = await startDashboard({
      catalog: context.catalog!,
      ...(redis === undefined ? {} : { redis }),
      ...(host === undefined ? {} : { host }),
      ...(token === undefined ? {} : { token }),
      port: integerFlag(values, 'port', 0, 0),
      intervalMillis: integerFlag(values, 'interval', 100, 1000),
    });
    // The URL is the result an operator needs now; the command then serves until interrupted.
    process.stdout.write(`Dashboard: ${dashboard.url}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await dashboard.close();
    return { result: { url: dashboard.url, stopped: true }, text: 'Dashboard stopped.', exitCode: 0 };
  },
};
