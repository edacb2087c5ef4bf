import { join } from 'node:path';
import { deadlineIn, testClusterError, type Deadline } from './cluster-wait';
import type { RedisBinaries } from './local-binaries';
import { LocalProcess, readLogTail } from './local-process';
import type { ProcessOwner } from './process-owner';
import { waitForRedis } from './redis-probe';
import type { TestServer } from './test-cluster-types';

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

const STOP_GRACE_MILLIS = 10_000;
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
export class LocalRedisServer implements TestServer {
  readonly url: string;
  readonly port: number;
  readonly logFile: string;
  readonly #process: LocalProcess;
  #queue: Promise<void> = Promise.resolve();

  constructor(readonly spec: LocalRedisServerSpec) {
    this.port = spec.port;
    this.url = `redis://127.0.0.1:${spec.port}`;
    this.logFile = join(spec.dir, 'server.log');
    this.#process = new LocalProcess({
      name: spec.name,
      command: spec.bin.redisServer,
      args: redisArgs(spec),
      owner: CURRENT_USER,
      logFile: this.logFile,
      pidFile: spec.pidFile,
      stopSignal: 'SIGTERM',
      emergencySignal: 'SIGKILL', // nothing to keep when the test process dies
    });
  }

  get running(): boolean {
    return this.#process.running;
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  /** Starts the server again (see {@link TestServer.start}). */
  start(): Promise<void> {
    return this.#serially(() => this.startWithin(deadlineIn(this.spec.startTimeoutMillis)));
  }

  /** Starts the process and waits until it answers PING. */
  async startWithin(deadline: Deadline): Promise<void> {
    if (this.#process.running) return;
    this.#process.start();
    try {
      await waitForRedis({ host: '127.0.0.1', port: this.port }, `Redis ${this.spec.name} on 127.0.0.1:${this.port}`, deadline, () => {
        const exit = this.#process.running ? undefined : this.#process.describeExit();
        return exit === undefined ? undefined : `the redis-server process ${exit}`;
      });
    } catch (error) {
      throw testClusterError(
        `${(error as Error).message}\nLast lines of ${this.logFile}:\n${readLogTail(this.logFile)}`,
        { server: this.spec.name, port: this.port, logFile: this.logFile },
        error,
      );
    }
  }

  /** SIGTERM (saving a snapshot on Redis 7), then SIGKILL if it hangs. */
  stop(): Promise<void> {
    return this.#serially(() => this.#process.stop(STOP_GRACE_MILLIS));
  }

  killNow(): void {
    this.#process.killNow();
  }

  #serially(task: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
