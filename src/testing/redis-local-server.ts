import { join } from 'node:path';
import type { Deadline } from './cluster-wait';
import type { RedisBinaries } from './local-binaries';
import { LocalServer } from './local-server';
import type { ProcessOwner } from './process-owner';
import { waitForRedis } from './redis-probe';

/** One local Redis server of the test cluster. */
export interface LocalRedisServerSpec {
  /** `redis0`, `redis-cluster0`, … */
  readonly name: string;
  /** Folder holding `server.log`, `dump.rdb` and, for cluster nodes, `nodes.conf`. */
  readonly dir: string;
  readonly port: number;
  /** Start as a Redis Cluster node (cluster bus on `port + 10000`). */
  readonly clusterNode: boolean;
  readonly bin: RedisBinaries;
  readonly pidFile: string;
  readonly startTimeoutMillis: number;
}

// Redis runs as whoever we are, root included; only PostgreSQL insists on another user.
const CURRENT_USER: ProcessOwner = Object.freeze({ label: 'current user' });

function redisArgs(spec: LocalRedisServerSpec): string[] {
  const args = [
    '--port', String(spec.port),
    '--bind', '127.0.0.1',
    '--daemonize', 'no',
    '--logfile', '', // stdout, which is the log file
    '--dir', spec.dir,
    '--dbfilename', 'dump.rdb',
    '--save', '', // no periodic snapshots
    '--appendonly', 'no',
  ];
  // Redis 7 can snapshot on SIGTERM only: stop() then start() keeps the data, as TestServer promises.
  if (spec.bin.major >= 7) args.push('--shutdown-on-sigterm', 'save');
  if (spec.clusterNode) {
    args.push(
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(spec.dir, 'nodes.conf'),
      '--cluster-node-timeout', '2000',
    );
  }
  return args;
}

/** A redis-server run as a local process. */
export class LocalRedisServer extends LocalServer {
  readonly url: string;

  constructor(override readonly spec: LocalRedisServerSpec) {
    super(spec, {
      command: spec.bin.redisServer,
      args: redisArgs(spec),
      owner: CURRENT_USER,
      pidFile: spec.pidFile,
      stopSignal: 'SIGTERM', // saves a snapshot on Redis 7, so a restart keeps the data
      emergencySignal: 'SIGKILL', // nothing to keep when the test process dies
    });
    this.url = `redis://127.0.0.1:${spec.port}`;
  }

  /** Starts the process and waits until it answers PING. */
  startWithin(deadline: Deadline): Promise<void> {
    return this.launch('redis-server', (abortReason) =>
      waitForRedis({ host: '127.0.0.1', port: this.port }, `Redis ${this.spec.name} on 127.0.0.1:${this.port}`, deadline, abortReason),
    );
  }
}
