/** What the unsharded-drain tests share: the `notes` table (unsharded, serial ids) and app processes writing it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Pool } from 'pg';
import { APP_ROLE, startMoverFixture, type MoverFixture } from './mover-fixture';

/** Shared notes seeded on the holder (ids 1..SHARED_NOTES, from its sequence). */
export const SHARED_NOTES = 40;

/** A mover fixture whose shards also have `notes`; the first one (the default holder) holds the shared notes. */
export async function startUnshardedFixture(name: string, shards: number): Promise<MoverFixture> {
  const f = await startMoverFixture(name, shards);
  for (const pool of f.pools) {
    await pool.query(`create table notes (id bigserial primary key, author text not null, body integer not null)`);
    await pool.query(`grant select, insert, update, delete on notes to ${APP_ROLE}; grant usage on sequence notes_id_seq to ${APP_ROLE}`);
  }
  await f.pools[0]!.query(`insert into notes (author, body) select 'shared', 0 from generate_series(1, ${SHARED_NOTES})`);
  return f;
}

/** Every shard's notes: id → [shard index, body][]. */
export async function notesByShard(pools: readonly Pool[]): Promise<Map<number, [number, number][]>> {
  const out = new Map<number, [number, number][]>();
  for (let i = 0; i < pools.length; i++) {
    const { rows } = await pools[i]!.query<{ id: string; body: number }>('select id, body from notes');
    for (const r of rows) out.set(Number(r.id), [...(out.get(Number(r.id)) ?? []), [i, r.body]]);
  }
  return out;
}

export interface NoteLine {
  ready?: string;
  op?: 'insert' | 'update';
  id?: number | null;
  body?: number | null;
  ms?: number;
  at?: number;
  read?: number;
  from?: number;
  refused?: string;
  readRefused?: number;
  unknown?: string;
  badRead?: number;
  fatal?: string;
  done?: { acks: number; refused: number; unknown: number; badReads: number; reads: number };
}

export interface NotesApp {
  readonly lines: NoteLine[];
  /** Resolves once `count` more lines than now were printed. */
  progress(count: number): Promise<void>;
  stop(): Promise<NoteLine['done']>;
  /** Ends the process at once (a test that failed part-way). */
  kill(): void;
}

/** Starts unsharded-app.ts as `role`. */
export async function startNotesApp(role: 'follower' | 'stale', catalogUrl: string): Promise<NotesApp> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'unsharded-app.ts'), role, catalogUrl, APP_ROLE, String(SHARED_NOTES)], {
    cwd: join(__dirname, '../../..'),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: NoteLine[] = [];
  const waiters: { target: number; resolve: () => void }[] = [];
  let ready: () => void;
  const readyPromise = new Promise<void>((resolve) => (ready = resolve));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as NoteLine;
    lines.push(line);
    if (line.ready !== undefined) ready();
    for (const w of waiters.filter((x) => lines.length >= x.target)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  await Promise.race([readyPromise, exited.then(() => Promise.reject(new Error(`${role} exited: ${JSON.stringify(lines)}`)))]);
  return {
    lines,
    progress(count) {
      const target = lines.length + count;
      return new Promise((resolve) => waiters.push({ target, resolve }));
    },
    async stop() {
      child.stdin!.write('stop\n');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000); // never outlive a failed test
      await exited;
      clearTimeout(timer);
      return lines.find((l) => l.done !== undefined)?.done;
    },
    kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** Runs a drain of the holder of the unsharded tables in a child process (unsharded-crash-child.ts) that kills itself (SIGKILL) at `point`. */
export function crashUnshardedDrainAt(catalogUrl: string, point: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'unsharded-crash-child.ts'), catalogUrl, point], { cwd: join(__dirname, '../../..'), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => child.on('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the mover did not die at ${point}: ${output}`)))));
}
