import { fork } from 'node:child_process';
import { join } from 'node:path';
import Redis, { Cluster } from 'ioredis';
import type { ChildConfig } from './cache-instance-child';
import type { RedisLike } from '../../../src/cache/l2-tier';
import { redisClientDefaults, redisSubscriberDefaults } from '../../../src/cache/redis-client';
import { InvalidationBus, TieredCache, closeRedisClients, singleRedisTier } from '../../../src/cache';

/**
 * A real ioredis client with the cache's recommended options (`subscriber`: the bus subscriber's),
 * connected before use. Close it with `closeRedisClient` (or pass it to a cache's `closeClients`).
 */
export async function connect(url: string, role: 'data' | 'subscriber' = 'data'): Promise<Redis> {
  const c = new Redis(url, { ...(role === 'subscriber' ? redisSubscriberDefaults : redisClientDefaults), lazyConnect: true });
  await c.connect();
  return c;
}

/** Resolves once `client` is ready again (at once when it is). */
export function ready(client: { status: string; once(e: 'ready', fn: () => void): unknown }): Promise<void> {
  return client.status === 'ready' ? Promise.resolve() : new Promise((resolve) => void client.once('ready', () => resolve()));
}

export async function connectCluster(nodes: readonly { host: string; port: number }[]): Promise<Cluster> {
  const c = new Cluster([...nodes], { enableOfflineQueue: false, redisOptions: { ...redisClientDefaults }, lazyConnect: true });
  await c.connect();
  return c;
}

/**
 * Fault injection on a real client (no mock): while `down`, every command fails as a dropped
 * connection would; `delayMillis` slows every command.
 */
export function chaos(client: RedisLike): RedisLike & { down: boolean; delayMillis: number } {
  const state = { down: false, delayMillis: 0 };
  const wrap =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    async (...a: A): Promise<R> => {
      if (state.delayMillis > 0) await new Promise((r) => setTimeout(r, state.delayMillis));
      if (state.down) throw new Error('chaos: connection is closed');
      return fn(...a);
    };
  return Object.assign(state, {
    get: wrap((k: string) => client.get(k)),
    mget: wrap((...k: string[]) => client.mget(...k)),
    evalsha: wrap((sha: string, n: number, ...a: (string | number)[]) => client.evalsha(sha, n, ...a)),
    eval: wrap((s: string, n: number, ...a: (string | number)[]) => client.eval(s, n, ...a)),
    call: wrap((c: string, ...a: (string | number)[]) => client.call(c, ...a)),
    quit: () => client.quit(),
  });
}

/** Resolves on the next event matching `pred`, or rejects after `timeoutMillis`. */
export function nextEvent<T>(subscribe: (fn: (e: T) => void) => () => void, pred: (e: T) => boolean, timeoutMillis = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => (off(), reject(new Error(`no event within ${timeoutMillis} ms`))), timeoutMillis);
    const off = subscribe((e) => {
      if (pred(e)) {
        clearTimeout(t);
        off();
        resolve(e);
      }
    });
  });
}

/** A test-cluster Redis run as a local process (signals need its pid). */
export interface SignalledServer {
  readonly pid?: number | undefined;
  readonly running: boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
}

function pidOf(server: SignalledServer): number {
  if (server.pid === undefined) throw new Error('this test signals the Redis process: it needs the local test-cluster backend');
  return server.pid;
}

/** SIGSTOP: Redis stops answering but keeps every connection open (a hang, not a disconnect). */
export function pause(server: SignalledServer): void {
  process.kill(pidOf(server), 'SIGSTOP');
}

/** SIGCONT after {@link pause}: Redis answers again, commands queued meanwhile included. */
export function resume(server: SignalledServer): void {
  process.kill(pidOf(server), 'SIGCONT');
}

/** SIGKILL, then waits for the exit: Redis is gone with whatever it held in memory. */
export async function kill(server: SignalledServer): Promise<void> {
  process.kill(pidOf(server), 'SIGKILL');
  await server.stop(); // resolves once the exit is seen (the process is already dead)
}

/**
 * Drives an injected clock until `call` settles: yields to I/O, then advances `stepMillis`, and so
 * on. Returns how much clock time the call needed; throws past `limitMillis` of clock time.
 */
export async function clockTimeToSettle(clock: { advance(ms: number): void }, call: Promise<unknown>, stepMillis: number, limitMillis: number): Promise<number> {
  let settled = false;
  call.then(
    () => (settled = true),
    () => (settled = true),
  );
  let advanced = 0;
  for (;;) {
    for (let i = 0; i < 5 && !settled; i++) await new Promise((r) => setImmediate(r));
    if (settled) return advanced;
    if (advanced >= limitMillis) throw new Error(`the call did not settle within ${limitMillis} ms of clock time`);
    clock.advance(stepMillis);
    advanced += stepMillis;
  }
}

/** A cache instance running in its own Node process (cache-instance-child.ts). */
export interface ChildInstance {
  call<T = unknown>(op: string, ...args: unknown[]): Promise<T>;
  /** Closes the cache and ends the process. */
  close(): Promise<void>;
}

/** Starts a cache instance in a child process; resolves once its bus has started. */
export function startChild(config: ChildConfig): Promise<ChildInstance> {
  const child = fork(join(__dirname, 'cache-instance-child.ts'), [JSON.stringify(config)], {
    execArgv: ['--import', 'tsx'],
    cwd: join(__dirname, '../../..'),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.on('message', (m: { id?: number; result?: unknown; error?: string; ready?: boolean; fatal?: string }) => {
      if (m.ready === true) {
        resolve({
          call: <T>(op: string, ...args: unknown[]) =>
            new Promise<T>((res, rej) => {
              const id = next++;
              waiting.set(id, { resolve: res as (v: unknown) => void, reject: rej });
              child.send({ id, op, args });
            }),
          close: async () => {
            if (child.exitCode === null) {
              await new Promise<void>((res) => {
                const id = next++;
                waiting.set(id, { resolve: () => res(), reject: () => res() });
                child.send({ id, op: 'close', args: [] });
              });
              child.kill();
            }
            await exited;
          },
        });
      } else if (m.fatal !== undefined) {
        reject(new Error(m.fatal));
      } else if (m.id !== undefined) {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        if (m.error !== undefined) w?.reject(new Error(m.error));
        else w?.resolve(m.result);
      }
    });
    child.once('exit', (code) => reject(new Error(`cache instance exited with code ${code} before it was ready`)));
  });
}

/** A cache instance with its own Redis clients and a bus on `channel`, one policy of 60 s (the clients close with the cache). */
export async function busCacheInstance(url: string, channel: string, policy: string): Promise<TieredCache> {
  const data = await connect(url);
  const subscriber = await connect(url, 'subscriber');
  const bus = new InvalidationBus({ publisher: data, subscriber, channel: `${channel}:bus` });
  try {
    await bus.start();
    return new TieredCache({ policies: { [policy]: { ttlMillis: 60_000 } }, l2: singleRedisTier({ client: data, prefix: `${channel}:` }), bus, closeClients: [data, subscriber] });
  } catch (error) {
    await closeRedisClients([data, subscriber]);
    throw error;
  }
}
