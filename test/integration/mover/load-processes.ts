/** Starts load-app.ts processes and collects their JSON lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface AppLine {
  ready?: string;
  op?: 'insert' | 'update' | 'delete';
  id?: number;
  score?: number;
  refused?: string;
  unknown?: string;
  badRead?: unknown;
  inexact?: number;
  read?: number;
  error?: string;
  fatal?: string;
  done?: { acks: number; refused: number; unknown: number; badReads: number; inexact: number; reads: number };
}

export interface AppProcess {
  readonly role: string;
  readonly lines: AppLine[];
  /** Resolves once the process printed `count` more acknowledged writes (or reads, for a reader) than now; fails after `withinMillis`, naming the process and its last lines. */
  progress(count: number, withinMillis?: number): Promise<void>;
  stop(): Promise<AppLine['done']>;
}

const repoRoot = join(__dirname, '../../..');

export async function startApp(role: 'writer' | 'reader' | 'stale', catalogUrl: string, appUser: string, index: number): Promise<AppProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'load-app.ts'), role, catalogUrl, appUser, String(index)], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: AppLine[] = [];
  const waiters: { target: number; resolve: () => void }[] = [];
  let events = 0;
  let ready: () => void;
  const readyPromise = new Promise<void>((resolve) => (ready = resolve));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as AppLine;
    lines.push(line);
    if (line.ready !== undefined) ready();
    if (line.op !== undefined || line.read !== undefined || line.refused !== undefined || line.unknown !== undefined || line.error !== undefined) events++;
    for (const w of waiters.filter((x) => events >= x.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  await Promise.race([readyPromise, exited.then(() => Promise.reject(new Error(`${role} ${index} exited: ${JSON.stringify(lines)}`)))]);
  return {
    role,
    lines,
    progress(count, withinMillis = 30_000) {
      const target = events + count;
      if (events >= target) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${role} ${index} made ${count - (target - events)} of ${count} more events in ${withinMillis} ms; last lines: ${JSON.stringify(lines.slice(-5))}`));
        }, withinMillis);
        const waiter = {
          target,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
        waiters.push(waiter);
      });
    },
    async stop() {
      child.stdin!.write('stop\n');
      // Within 20 s, or killed and a failure naming the process and its last lines.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`${role} ${index} did not stop within 20 s of being asked; last lines: ${JSON.stringify(lines.slice(-5))}`));
        }, 20_000);
      });
      await Promise.race([exited, late]).finally(() => clearTimeout(timer));
      return lines.find((l) => l.done !== undefined)?.done;
    },
  };
}
