import { join } from 'node:path';
import { deadlineIn, testClusterError, type Deadline } from './cluster-wait';
import { LocalProcess, readLogTail, type LocalProcessSpec } from './local-process';
import type { TestServer } from './test-cluster-types';

const STOP_GRACE_MILLIS = 10_000;

/** What every local server needs to know about itself. */
export interface LocalServerSpec {
  readonly name: string;
  /** Folder holding the server's files and `server.log`. */
  readonly dir: string;
  readonly port: number;
  readonly startTimeoutMillis: number;
}

/**
 * A test-cluster server run as a local process: start, stop and restart are serialised, a start
 * waits until the server answers, and a failed start reports the last lines of the server's log.
 */
export abstract class LocalServer implements TestServer {
  abstract readonly url: string;
  readonly port: number;
  readonly logFile: string;
  protected readonly process: LocalProcess;
  #queue: Promise<void> = Promise.resolve();

  protected constructor(
    readonly spec: LocalServerSpec,
    process: Omit<LocalProcessSpec, 'name' | 'logFile'>,
  ) {
    this.port = spec.port;
    this.logFile = join(spec.dir, 'server.log');
    this.process = new LocalProcess({ ...process, name: spec.name, logFile: this.logFile });
  }

  get running(): boolean {
    return this.process.running;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** Starts the server again (see {@link TestServer.start}). */
  start(): Promise<void> {
    return this.serially(() => this.startWithin(deadlineIn(this.spec.startTimeoutMillis)));
  }

  /** Starts the process and waits until the server is ready. */
  abstract startWithin(deadline: Deadline): Promise<void>;

  /** The stop signal, then the emergency signal if it hangs. */
  stop(): Promise<void> {
    return this.serially(() => this.process.stop(STOP_GRACE_MILLIS));
  }

  /** Synchronous immediate shutdown for exit handlers. */
  killNow(): void {
    this.process.killNow();
  }

  /**
   * Starts the process unless it runs and waits with `ready`, which gets a function telling why
   * waiting is pointless (the process exited). A failure carries the log's last lines.
   */
  protected async launch(program: string, ready: (abortReason: () => string | undefined) => Promise<void>): Promise<void> {
    if (this.process.running) return;
    this.process.start();
    const abortReason = (): string | undefined => {
      const exit = this.process.running ? undefined : this.process.describeExit();
      return exit === undefined ? undefined : `the ${program} process ${exit}`;
    };
    try {
      await ready(abortReason);
    } catch (error) {
      throw testClusterError(
        `${(error as Error).message}\nLast lines of ${this.logFile}:\n${readLogTail(this.logFile)}`,
        { server: this.spec.name, port: this.port, logFile: this.logFile },
        error,
      );
    }
  }

  protected serially(task: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
