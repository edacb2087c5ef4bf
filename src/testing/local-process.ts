import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { ProcessOwner } from './process-owner';

/** How to run one server process. */
export interface LocalProcessSpec {
  /** For messages: `shard0-primary`, `redis0`, … */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly owner: ProcessOwner;
  /** The server writes its log here (stdout and stderr go straight to the file, not through us). */
  readonly logFile: string;
  /**
   * While the process runs, `<pid> <signal>` is kept in this file so the watchdog can end it
   * with `emergencySignal` if this Node.js process dies without cleaning up.
   */
  readonly pidFile: string;
  /** Graceful stop (PostgreSQL: SIGINT is a fast shutdown; Redis: SIGTERM). */
  readonly stopSignal: NodeJS.Signals;
  /** Stop when nothing may wait (PostgreSQL: SIGQUIT, immediate shutdown; Redis: SIGKILL). */
  readonly emergencySignal: NodeJS.Signals;
}

/** Exit of the process: its code or signal, or the spawn error. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error?: Error;
}

const LOG_TAIL_BYTES = 8192;

/** Last lines of a log file, with anything that looks like a password masked. */
export function readLogTail(logFile: string, lines = 20): string {
  let fd: number | undefined;
  try {
    const size = statSync(logFile).size;
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    fd = openSync(logFile, 'r');
    readSync(fd, buffer, 0, length, size - length);
    return buffer
      .toString('utf8')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .slice(-lines)
      .join('\n')
      .replace(/(password\s*[=:]\s*)\S+/gi, '$1***')
      .replace(/(\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@');
  } catch {
    return '(no log)';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * One server process started from this Node.js process. It can be started again after it
 * exits; `killNow()` is synchronous so it can run inside a process 'exit' handler.
 */
export class LocalProcess {
  #child: ChildProcess | undefined;
  #exited: Promise<ProcessExit> = Promise.resolve({ code: null, signal: null });
  #lastExit: ProcessExit | undefined;

  constructor(readonly spec: LocalProcessSpec) {}

  /** Pid while running. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Why the last run ended, for messages (`exited with code 1`). */
  describeExit(): string | undefined {
    const exit = this.#lastExit;
    if (exit === undefined) return undefined;
    if (exit.error !== undefined) return `could not be started: ${exit.error.message}`;
    return exit.signal !== null ? `was ended by ${exit.signal}` : `exited with code ${exit.code}`;
  }

  /** Spawns the process; readiness is the caller's business (it connects). */
  start(): void {
    if (this.#child !== undefined) return;
    this.#lastExit = undefined;
    const { spec } = this;
    const log = openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(spec.command, [...spec.args], {
        uid: spec.owner.uid,
        gid: spec.owner.gid,
        cwd: '/',
        env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log); // the child has its own copy of the descriptor
    }
    this.#child = child;
    this.#exited = new Promise<ProcessExit>((resolve) => {
      const done = (exit: ProcessExit): void => {
        if (this.#child === child) this.#child = undefined;
        this.#lastExit = exit;
        rmSync(spec.pidFile, { force: true });
        resolve(exit);
      };
      child.once('error', (error) => done({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => done({ code, signal }));
    });
    if (child.pid !== undefined) writeFileSync(spec.pidFile, `${child.pid} ${spec.emergencySignal.replace(/^SIG/, '')}\n`);
    // A forgotten stop() must not keep the test process alive; the exit handlers end the server.
    child.unref();
  }

  /** Resolves when the current run ends. */
  get exited(): Promise<ProcessExit> {
    return this.#exited;
  }

  /** Sends `stopSignal`, then SIGKILL if the process has not exited within `graceMillis`. */
  async stop(graceMillis: number): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.ref(); // keep the event loop alive until the exit is seen
    const exited = this.#exited;
    signal(child.pid, this.spec.stopSignal);
    const timer = setTimeout(() => signal(child.pid, 'SIGKILL'), graceMillis);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Synchronous last-resort stop, for process exit handlers. */
  killNow(): void {
    signal(this.#child?.pid, this.spec.emergencySignal);
  }
}

function signal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}
