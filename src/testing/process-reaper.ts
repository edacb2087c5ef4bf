import { spawn } from 'node:child_process';

/** Something holding server processes that must not outlive this Node.js process. */
export interface Reapable {
  /** Signals every server to end at once; synchronous, so it can run in an 'exit' handler. */
  killNow(): void;
}

const live = new Set<Reapable>();
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function killAll(): void {
  for (const reapable of live) reapable.killNow();
}

function onSignal(signal: NodeJS.Signals): void {
  killAll();
  uninstall();
  // Our listener replaced the default action (exit); restore it unless someone else handles the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  process.off('exit', killAll);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

/**
 * Ends `reapable`'s servers when this process exits or receives SIGINT/SIGTERM/SIGHUP.
 * Listeners are installed only while something is registered, so test files that each start
 * a cluster do not pile up listeners.
 */
export function registerReapable(reapable: Reapable): void {
  live.add(reapable);
  install();
}

export function unregisterReapable(reapable: Reapable): void {
  live.delete(reapable);
  if (live.size === 0) uninstall();
}

// Runs detached, in its own session. While the parent lives and the folder exists it only
// polls once a second. When the parent is gone (even SIGKILLed, when no handler can run), it
// signals every pid listed in the pids folder (`<pid> <signal>` per file), waits up to ~10 s
// for them to exit, kills what remains, and removes the cluster's folder.
const WATCHDOG_SCRIPT = `
parent="$1"; dir="$2"; pids="$3"
# A zombie counts as gone: it has exited and only waits for init to reap it.
alive() { kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
while alive "$parent" && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
for f in "$pids"/*; do [ -f "$f" ] && { read -r pid sig < "$f"; kill -"$sig" "$pid" 2>/dev/null; }; done
i=0
while [ "$i" -lt 50 ]; do
  left=0
  for f in "$pids"/*; do [ -f "$f" ] && { read -r pid sig < "$f"; alive "$pid" && left=1; }; done
  [ "$left" = 0 ] && break
  sleep 0.2; i=$((i + 1))
done
for f in "$pids"/*; do [ -f "$f" ] && { read -r pid sig < "$f"; kill -KILL "$pid" 2>/dev/null; }; done
rm -rf "$dir"
`;

/** A running watchdog process. */
export interface Watchdog {
  readonly pid: number | undefined;
  /** Ends the watchdog (after a normal stop there is nothing left for it to do). */
  stop(): void;
}

/**
 * Starts a tiny detached shell that ends the servers listed in `pidsDir` and removes `dir` once
 * this process is gone, so a SIGKILLed test worker leaves no orphaned servers or folders behind.
 */
export function startWatchdog(dir: string, pidsDir: string): Watchdog {
  if (process.platform === 'win32') return { pid: undefined, stop: () => undefined };
  const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'kysely-scale-watchdog', String(process.pid), dir, pidsDir], {
    detached: true,
    stdio: 'ignore',
    cwd: '/',
  });
  child.on('error', () => undefined); // no /bin/sh: the in-process exit handlers still run
  child.unref();
  return {
    pid: child.pid,
    stop: () => {
      try {
        if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    },
  };
}
