/**
 * Resharding: the slot mover's copy rate against a plain `COPY (select …) TO STDOUT | COPY … FROM
 * STDIN` of the same rows between the same servers; the write overhead of change capture (the
 * capture trigger on, against off, in alternating rounds); the cost of the shard guard on point
 * reads (row security on, against off); and a move under load: app p99 before and during, the
 * pause writers to the moving slots see at the cutover, and lost/duplicated rows from the
 * writers' own log of acknowledged writes.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { Kysely } from 'kysely';
import { Client, Pool } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { startTestCluster } from '../src/testing';
import { createTopology, type ServerSpec } from '../src/cluster/topology';
import type { PoolLike } from '../src/cluster/server-pools';
import { slotOf } from '../src/cluster/slot-hash';
import { SLOT_FUNCTIONS_SQL } from '../src/cluster/slot-function-sql';
import { ShardedDialect } from '../src/sharding/dialect/sharded-dialect';
import { TopologyCatalog } from '../src/admin/topology-catalog';
import { followCatalog } from '../src/admin/follow-catalog';
import { moveSlots } from '../src/admin/mover/mover-operations';
import type { MoveResult } from '../src/admin/mover/move-result';
import { installGuard, installCapture, dropCapture } from '../src/admin/mover/shard-guard';
import { slotBitsLiteral, slotFilterSql } from '../src/admin/mover/shard-guard-sql';
import type { MoveProgress, MoveTuning } from '../src/admin/mover/move-context';
import { makeReport, writeReport, type BenchReport } from './bench-report';

/** A move in a child process (see resharding-mover-process.ts), loaded and waiting: `start` runs it, passing its progress to `onProgress`. */
interface MoverProcess {
  readonly ready: Promise<void>;
  start(onProgress: (p: MoveProgress) => void): Promise<MoveResult>;
}

function spawnMover(request: { catalog: string; slots: string; to: string; maxRowsPerSecond: number; tuning: Partial<MoveTuning> }): MoverProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'resharding-mover-process.ts')], {
    env: { ...process.env, RESHARDING_MOVE: JSON.stringify(request) },
    stdio: ['pipe', 'pipe', 'inherit'],
    timeout: 300_000,
  });
  let onReady: () => void = () => undefined;
  let report: (p: MoveProgress) => void = () => undefined;
  let result: MoveResult | undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const done = new Promise<MoveResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (result === undefined ? reject(new Error(`the mover process exited with ${code} and no result`)) : resolve(result)));
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { ready?: true; progress?: MoveProgress; result?: MoveResult; mark?: string; at?: number };
    if (message.ready === true) onReady();
    if (message.mark !== undefined) process.stderr.write(`mover ${message.mark} ${message.at!.toFixed(1)}\n`);
    if (message.progress !== undefined) report(message.progress);
    if (message.result !== undefined) result = message.result;
  });
  return {
    ready,
    start: (onProgress) => {
      report = onProgress;
      child.stdin.end('go\n');
      return done;
    },
  };
}

/** A move under load: which slots go where, at what throttle. */
interface LoadedMoveSpec {
  readonly name: 'busy' | 'gentle';
  readonly slots: string;
  /** Its first slot (it moves 1,024). */
  readonly first: number;
  readonly to: string;
  readonly maxRowsPerSecond: number;
}

/** What the app saw around one move under load. */
interface LoadedMoveOutcome {
  readonly stealBefore: number;
  readonly stealDuring: number;
  readonly p99Before: number;
  readonly p99During: number;
  readonly opsBefore: number;
  readonly opsDuring: number;
  readonly overTwice: number;
  readonly byPhase: Record<string, number>;
  readonly pauses: number[];
  readonly durationMillis: number;
}

interface DB {
  users: { id: number; name: string; score: number; payload: string };
}

const ROWS = Number(process.env.RESHARDING_ROWS ?? 200_000);
// The move under load is throttled as an operator would throttle it on a busy cluster (--max-rows-per-second).
const MOVE_ROWS_PER_SECOND = Number(process.env.RESHARDING_MAX_ROWS_PER_SECOND ?? 60_000);
/** The second move under load, gentler: what a lower throttle buys the app on the same machine (`RESHARDING_GENTLE_ROWS_PER_SECOND`). */
const GENTLE_ROWS_PER_SECOND = Number(process.env.RESHARDING_GENTLE_ROWS_PER_SECOND ?? 20_000);
/**
 * The load's warm-up before the first window "before" (`RESHARDING_WARMUP_MS`, default 1 s). Tried
 * at 8 s in the fifteenth session (the first move's start phase had bursts of slow writes the
 * second's had not): the bursts stayed in some runs and the busy move's p99 during came out
 * higher (see bench/README), so the default stayed.
 */
const WARMUP_MILLIS = Number(process.env.RESHARDING_WARMUP_MS ?? 1_000);
const WRITERS = 8;
/** Experiments only: tuning of the move under load as JSON (`{"niceRatio":0}`); the committed runs use the defaults. */
const MOVE_TUNING: Partial<MoveTuning> = JSON.parse(process.env.RESHARDING_TUNING ?? '{}') as Partial<MoveTuning>;
/**
 * Writes per second of the app during the move-under-load part, open loop; 0 runs the writers
 * closed loop as fast as they go, which saturates this 2-core machine before the move starts
 * (p99 then measures the queue, and any extra work multiplies it).
 */
const WRITE_RATE = Number(process.env.RESHARDING_WRITE_RATE ?? 1_000);
/**
 * How the app's writes arrive (`RESHARDING_ARRIVALS`). `writers` (the default, the committed runs):
 * 8 sequential writers, each on its own schedule: one write held by the fence also delays its
 * writer's next ones, to other slots too. `independent` (experiments): each write is a request of
 * its own, issued at its scheduled time whatever the others wait for (the open-loop load of wrk2
 * or k6's arrival-rate executors). Both count a write from its scheduled time once it starts over
 * 2 ms late.
 */
const ARRIVALS = process.env.RESHARDING_ARRIVALS ?? 'writers';
const TABLES = { users: 'id' };
const SCHEMA = 'create table users (id bigint primary key, name text not null, score integer not null default 0, payload text not null)';

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
};
const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

/** The machine's CPU time so far, in clock ticks: all of it and what the hypervisor gave other guests (steal); undefined off Linux. */
function cpuTicks(): { total: number; steal: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** Percentage of CPU time stolen by the hypervisor between two readings (-1 when unknown): a figure taken while it is high measures the neighbours. */
function stealPercent(from: ReturnType<typeof cpuTicks>, to: ReturnType<typeof cpuTicks>): number {
  if (from === undefined || to === undefined || to.total === from.total) return -1;
  return round((100 * (to.steal - from.steal)) / (to.total - from.total), 1);
}

export async function run(): Promise<BenchReport> {
  // Shared 2-core machines: the load average says how much of a figure is the neighbours'.
  const loadAtStart = loadavg()[0]!;
  const cluster = await startTestCluster({ shards: 2, backend: 'local' });
  try {
    const shards = await cluster.createDatabase('resharding');
    const [{ primaryUrl: catalogUrl }] = (await cluster.createDatabase('resharding_catalog')) as unknown as [{ primaryUrl: string }];
    const pools = shards.map((s) => new Pool({ connectionString: s.primaryUrl, max: 4 }));
    for (const p of pools) {
      await p.query(SCHEMA);
      await p.query(SLOT_FUNCTIONS_SQL);
      await p.query('create table users_baseline (like users including all)');
    }
    const topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primaryUrl })) });
    const catalog = new TopologyCatalog({ url: catalogUrl });
    await catalog.install();
    await catalog.publish(topology, 'bench');
    for (let i = 0; i < 2; i++) {
      const ids = Array.from({ length: ROWS }, (_, id) => id).filter((id) => topology.shardForSlot(slotOf(id)).index === i);
      await pools[i]!.query(`insert into users (id, name, payload) select u, 'user ' || u, repeat(md5(u::text), 3) from unnest($1::bigint[]) u`, [ids]);
      // Vacuumed now, so autovacuum has no reason to start on these rows during a measured window.
      await pools[i]!.query('vacuum (analyze) users');
    }
    for (let i = 0; i < 2; i++) {
      const c = new Client(shards[i]!.primaryUrl);
      await c.connect();
      await installGuard(c, shards[i]!.id, [{ name: 'users', keyColumn: 'id' }], topology.slotCount);
      await c.end();
    }

    // 1. Plain COPY of slots 0-1023 (shard0 → shard1's scratch table) against the mover copying the same rows.
    const slotsA = Array.from({ length: 1024 }, (_, s) => s);
    const filter = slotFilterSql({ name: 'users', keyColumn: 'id' }, slotBitsLiteral(slotsA, topology.slotCount), topology.slotCount);
    const src = new Client(shards[0]!.primaryUrl);
    const dst = new Client(shards[1]!.primaryUrl);
    await src.connect();
    await dst.connect();
    await src.query('set kysely_scale.bypass = on');
    let t = performance.now();
    await pipeline(src.query(copyTo(`copy (select * from users where ${filter}) to stdout`)), dst.query(copyFrom('copy users_baseline from stdin')));
    const baselineMillis = performance.now() - t;
    const baselineRows = Number((await dst.query('select count(*) as n from users_baseline')).rows[0].n);
    await dst.query('truncate users_baseline');
    const phases: { phase: string; at: number; rows: number }[] = [];
    const onProgress = (p: MoveProgress): void => {
      if (phases.at(-1)?.phase !== p.phase) phases.push({ phase: p.phase, at: performance.now(), rows: p.rowsCopied });
    };
    const moveA = await moveSlots({ catalog: catalogUrl, tables: TABLES, slots: '0-1023', to: shards[1]!.id, onProgress });
    if (!moveA.ok) throw new Error(`move A failed: ${JSON.stringify(moveA.error)}`);
    const copyStart = phases.find((p) => p.phase === 'capturing')!.at;
    const copyEnd = phases.find((p) => p.phase === 'copied')!.at;
    const moverRowsPerSecond = moveA.rowsCopied / ((copyEnd - copyStart) / 1000);
    const baselineRowsPerSecond = baselineRows / (baselineMillis / 1000);

    // 2. Change-capture write overhead: single-row updates on shard1 rows of slots 2048-2303, trigger off/on in alternating rounds.
    const captureSlots = Array.from({ length: 256 }, (_, s) => 2048 + s);
    const captureIds = Array.from({ length: ROWS }, (_, id) => id).filter((id) => captureSlots.includes(slotOf(id))).slice(0, 2000);
    const writer = new Pool({ connectionString: shards[1]!.primaryUrl, max: 4 });
    const updateRound = async (millis: number): Promise<number[]> => {
      const lat: number[] = [];
      const end = performance.now() + millis;
      let i = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (performance.now() < end) {
          const id = captureIds[i++ % captureIds.length]!;
          const s = performance.now();
          await writer.query('update users set score = score + 1 where id = $1', [id]);
          lat.push(performance.now() - s);
        }
      }));
      return lat;
    };
    const admin = new Client(shards[1]!.primaryUrl);
    await admin.connect();
    await admin.query('set kysely_scale.bypass = on');
    // The trigger's own cost, without the network: microseconds per update, each in a transaction
    // of its own (PL/pgSQL sets up its expressions once per transaction), run by the server in a DO
    // loop, for keys in the moving slots (logged) and in other slots of the same shard (skipped).
    const otherIds = Array.from({ length: ROWS }, (_, id) => id).filter((id) => slotOf(id) >= 2304 && topology.shardForSlot(slotOf(id)).index === 1).slice(0, 500);
    const serverRound = async (ids: readonly number[]): Promise<number> => {
      const started = performance.now();
      await writer.query(`do $$ declare ids bigint[] := '{${ids.join(',')}}'; begin for j in 1 .. array_length(ids, 1) loop update users set score = score + 1 where id = ids[j]; commit; end loop; end $$`);
      return ((performance.now() - started) * 1000) / ids.length;
    };
    const server: Record<'off' | 'onMoving' | 'onOther', number[]> = { off: [], onMoving: [], onOther: [] };
    const off: number[] = [];
    const on: number[] = [];
    for (let r = 0; r < 6; r++) {
      off.push(...(await updateRound(400)));
      server.off.push(await serverRound(captureIds.slice(0, 500)));
      await admin.query(`insert into kysely_scale.slot_move (slot, move_id, next_version) select s, 999999, 0 from unnest($1::int[]) s`, [captureSlots]);
      await installCapture(admin, [{ name: 'users', keyColumn: 'id' }], topology.slotCount);
      on.push(...(await updateRound(400)));
      server.onMoving.push(await serverRound(captureIds.slice(0, 500)));
      server.onOther.push(await serverRound(otherIds));
      await dropCapture(admin, [{ name: 'users', keyColumn: 'id' }]);
      await admin.query('delete from kysely_scale.slot_move where move_id = 999999; delete from kysely_scale.change_log where move_id = 999999');
    }
    await writer.end();

    // 3. Guard cost on point reads: row security on (as the app role) against off (same table, policies disabled), alternating.
    await admin.query(`create role bench_app login; grant select, insert, update, delete on users to bench_app`);
    const appUrl = new URL(shards[1]!.primaryUrl);
    appUrl.username = 'bench_app';
    const reader = new Pool({ connectionString: appUrl.toString(), max: 4, options: '-c kysely_scale.topology_version=2' });
    const readIds = Array.from({ length: ROWS }, (_, id) => id).filter((id) => topology.shardForSlot(slotOf(id)).index === 1).slice(0, 5000);
    const readRound = async (millis: number): Promise<number[]> => {
      const lat: number[] = [];
      const end = performance.now() + millis;
      let i = 0;
      await Promise.all(Array.from({ length: 4 }, async () => {
        while (performance.now() < end) {
          const s = performance.now();
          await reader.query('select id, name from users where id = $1', [readIds[i++ % readIds.length]]);
          lat.push(performance.now() - s);
        }
      }));
      return lat;
    };
    const guarded: number[] = [];
    const bare: number[] = [];
    for (let r = 0; r < 6; r++) {
      guarded.push(...(await readRound(300)));
      await admin.query('alter table users disable row level security');
      bare.push(...(await readRound(300)));
      await admin.query('alter table users enable row level security');
    }
    await reader.end();
    await admin.end();

    // 4. A move under load: writers over every slot through a dialect that follows the catalog and
    // handles fence refusals itself (topologySource), its sessions tagged with their version.
    const appPool = (server: ServerSpec): PoolLike => {
      const u = new URL(server.url);
      u.username = 'bench_app';
      const pool = new Pool({ connectionString: u.toString(), max: WRITERS });
      pool.on('error', () => undefined);
      return pool as unknown as PoolLike;
    };
    await pools[0]!.query(`do $$ begin if not exists (select 1 from pg_roles where rolname = 'bench_app') then create role bench_app login; end if; end $$; grant select, insert, update, delete on users to bench_app`);
    const dialect = new ShardedDialect({ topology: (await catalog.latest())!, shardKeys: { users: 'id' }, createPool: appPool, fenceSessions: true, topologySource: catalog, onPoolError: () => undefined });
    const db = new Kysely<DB>({ dialect });
    const watch = await followCatalog(dialect, catalog);
    const versionSeen: string[] = [];
    const debugWatch = process.env.RESHARDING_DEBUG !== undefined ? await catalog.watch((t) => versionSeen.push(`notified v${t.version} ${(performance.timeOrigin + performance.now()).toFixed(1)}`)) : undefined;
    // Two moves under load, one after the other, each with its own window "before" (the writers run
    // throughout): the busy one at MOVE_ROWS_PER_SECOND, then a gentle one at GENTLE_ROWS_PER_SECOND,
    // so the cost of the throttle an operator picks shows in one run, on the same machine.
    const moves: LoadedMoveSpec[] = [
      { name: 'busy', slots: '2048-3071', first: 2048, to: shards[0]!.id, maxRowsPerSecond: MOVE_ROWS_PER_SECOND },
      { name: 'gentle', slots: '3072-4095', first: 3072, to: shards[0]!.id, maxRowsPerSecond: GENTLE_ROWS_PER_SECOND },
    ];
    let moving = new Set<number>();
    // A warm-up first (WARMUP_MILLIS): new pools, first plans and the app's code still being compiled are not what "before" should measure.
    let phase: 'warmup' | 'before' | 'during' | 'after' = 'warmup';
    let latency: Record<string, number[]> = { warmup: [], before: [], during: [], after: [] };
    // Writes to the moving slots, [start, end]: those in flight while the fence was up saw the pause.
    let movingWrites: [number, number][] = [];
    const acked = new Map<number, number>();
    let stop = false;
    let counter = 0;
    const debug = process.env.RESHARDING_DEBUG !== undefined;
    // With RESHARDING_DEBUG: every write (start, latency, moving slot?) and each phase's start, to see where the latency goes.
    let samples: [number, number, number][] = [];
    let phaseStarts: [string, number][] = [];
    // With RESHARDING_DEBUG: the app process's garbage collections [start, duration], to tell its own pauses from the shards'.
    const gcs: [number, number][] = [];
    const gcObserver = debug ? new PerformanceObserver((list) => list.getEntries().forEach((e) => gcs.push([e.startTime, e.duration]))) : undefined;
    gcObserver?.observe({ entryTypes: ['gc'] });
    // The movers' processes load before the app load starts: their start-up is not part of a move.
    const movers = moves.map((m) => spawnMover({ catalog: catalogUrl, slots: m.slots, to: m.to, maxRowsPerSecond: m.maxRowsPerSecond, tuning: MOVE_TUNING }));
    await Promise.all(movers.map((m) => m.ready));
    // Open loop at WRITE_RATE (see ARRIVALS): every write's latency counts from its scheduled time, so waiting is not hidden.
    const interval = WRITE_RATE > 0 ? (WRITERS * 1000) / WRITE_RATE : 0;
    const write = async (id: number, value: number, s: number): Promise<void> => {
      await db.insertInto('users').values({ id, name: 'load', score: value, payload: 'x' }).onConflict((oc) => oc.column('id').doUpdateSet({ score: value })).execute();
      const end = performance.now();
      if ((acked.get(id) ?? -1) < value) acked.set(id, value);
      latency[phase]!.push(end - s);
      if (phase === 'during' || debug) samples.push([s, end - s, moving.has(slotOf(id)) ? 1 : 0]);
      if (moving.has(slotOf(id))) movingWrites.push([s, end]);
    };
    const load = ARRIVALS === 'independent' ? independentArrivals() : Promise.all(Array.from({ length: WRITERS }, async (_, w) => {
      let next = performance.now() + (w * interval) / WRITERS;
      while (!stop) {
        const id = ROWS + w * 1_000_000 + (counter++ % 5000);
        const value = counter;
        if (interval > 0) {
          const wait = next - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const started = performance.now();
        const s = interval > 0 && started - next > 2 ? next : started;
        next += interval;
        await write(id, value, s);
      }
    }));
    /**
     * Requests arriving on a schedule of their own, each issued at its time whatever the others
     * are waiting for (an app serving independent requests), over the same keys as the writers'
     * lanes; each counted from its scheduled time, waits for a pooled connection included.
     */
    async function independentArrivals(): Promise<void> {
      const gap = 1000 / WRITE_RATE;
      const inFlight = new Set<Promise<void>>();
      let next = performance.now();
      while (!stop) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        // Every request due by now starts now (a timer late by a few ms must not thin the load).
        while (next <= performance.now() && !stop && inFlight.size < 1000) {
          const n = counter++;
          const id = ROWS + (n % WRITERS) * 1_000_000 + (Math.floor(n / WRITERS) % 5000);
          // As the writers do: counted from the scheduled time once the start is over 2 ms late (a timer a
          // millisecond late is the load generator's, not the app's), from the start otherwise.
          const issued = performance.now();
          const p = write(id, n, issued - next > 2 ? next : issued).finally(() => inFlight.delete(p));
          inFlight.add(p);
          next += gap;
        }
        if (inFlight.size >= 1000) await Promise.race(inFlight); // bounded: a stall does not pile up requests without limit
      }
      await Promise.all(inFlight);
    }
    await new Promise((r) => setTimeout(r, WARMUP_MILLIS));
    const outcomes: LoadedMoveOutcome[] = [];
    for (const [index, spec] of moves.entries()) outcomes.push(await loadedMove(spec, movers[index]!));

    /** One move under the running load: its window before (3 s), the move, half a second after; its figures. */
    async function loadedMove(spec: LoadedMoveSpec, mover: MoverProcess): Promise<LoadedMoveOutcome> {
      // The rows an earlier move deleted and copied vacuumed first (the writers still running), so
      // autovacuum, which they would start on its next round, does not run in this move's window before.
      await Promise.all(pools.map((p) => p.query('vacuum (analyze) users')));
      moving = new Set(Array.from({ length: 1024 }, (_, s) => spec.first + s));
      latency = { warmup: [], before: [], during: [], after: [] };
      movingWrites = [];
      samples = [];
      phaseStarts = [];
      phase = 'before';
      const ticksBefore = cpuTicks();
      await new Promise((r) => setTimeout(r, 3000));
      phase = 'during';
      const ticksDuring = cpuTicks();
      let fenceFrom = Infinity;
      let fenceTo = -Infinity;
      // The mover runs in its own process, as the operator's CLI does; its progress lines arrive here
      // as it reports them (the cutover phase just before the fence goes up, published just after).
      const onMoveProgress = (p: MoveProgress): void => {
        if (p.phase === 'cutover') fenceFrom = Math.min(fenceFrom, performance.now());
        // The first report of the published phase ends the fence (the clean-up keeps reporting that phase with its progress).
        if (p.phase === 'published' && fenceTo < fenceFrom) fenceTo = performance.now();
        if (debug) process.stderr.write(`progress ${p.batch}:${p.phase} ${(performance.timeOrigin + performance.now()).toFixed(1)}\n`);
        if (phaseStarts.at(-1)?.[0] !== `${p.batch}:${p.phase}`) phaseStarts.push([`${p.batch}:${p.phase}`, performance.now()]);
      };
      // With RESHARDING_DEBUG (but not RESHARDING_DEBUG=phases, which only times the phases): what app sessions wait for on each shard, sampled every 5 ms during the move.
      const waits = new Map<string, number>();
      // With RESHARDING_DEBUG: the mover's statements running on each shard, sampled with the app's waits.
      const moverActive: [number, string][] = [];
      let sampling = debug && process.env.RESHARDING_DEBUG !== 'phases';
      const samplers = sampling
        ? shards.map(async (s) => {
            const c = new Client(s.primaryUrl);
            await c.connect();
            while (sampling) {
              const { rows } = await c.query<{ w: string; mover: boolean }>(
                `select coalesce(wait_event_type || ':' || wait_event, 'cpu') || ' ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 60) as w, application_name = 'kysely-scale mover' as mover
                   from pg_stat_activity where (usename = 'bench_app' or application_name = 'kysely-scale mover') and state = 'active' and pid <> pg_backend_pid()`,
              );
              const at = performance.now();
              for (const r of rows) {
                if (r.mover) moverActive.push([at, `${s.id} ${r.w}`]);
                else waits.set(`${s.id} ${r.w}`, (waits.get(`${s.id} ${r.w}`) ?? 0) + 1);
              }
              await new Promise((r) => setTimeout(r, 5));
            }
            await c.end();
          })
        : [];
      phaseStarts.push(['0:start', performance.now()]);
      const result = await mover.start(onMoveProgress);
      const moveEnd = performance.now();
      phase = 'after';
      const ticksAfter = cpuTicks(); // before the debug output below, which takes the bench process's CPU from the writers
      sampling = false;
      await Promise.all(samplers);
      const p99Before = percentile(latency.before!, 0.99);
      if (debug) process.stderr.write(`move ${spec.name} (slots ${spec.slots}, ${spec.maxRowsPerSecond} rows/s)\n`);
      if (debug) for (const [w, n] of [...waits].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stderr.write(`wait ${n} ${w}\n`);
      if (debug) {
        // Which mover statements ran while slow writes (over 2x the p99 before) were in flight, and for how many of them.
        const slow = samples.filter(([, l]) => l > 2 * p99Before);
        const blame = new Map<string, number>();
        for (const [s, l] of slow) {
          const seen = new Set(moverActive.filter(([at]) => at >= s && at <= s + l).map(([, w]) => w));
          if (seen.size === 0) seen.add('(no mover statement sampled)');
          for (const w of seen) blame.set(w, (blame.get(w) ?? 0) + 1);
        }
        process.stderr.write(`slow writes (> ${(2 * p99Before).toFixed(1)} ms): ${slow.length} of ${samples.length}\n`);
        for (const [w, n] of [...blame].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stderr.write(`blame ${n} ${w}\n`);
        const moverTotals = new Map<string, number>();
        for (const [, w] of moverActive) moverTotals.set(w, (moverTotals.get(w) ?? 0) + 1);
        for (const [w, n] of [...moverTotals].sort((a, b) => b[1] - a[1]).slice(0, 12)) process.stderr.write(`mover ${n} ${w}\n`);
      }
      const held = movingWrites.filter(([s, e]) => s <= fenceTo && e >= fenceFrom);
      if (debug) {
        const abs = (x: number): string => (performance.timeOrigin + x).toFixed(1);
        process.stderr.write(`fence window (progress) ${abs(fenceFrom)} .. ${abs(fenceTo)}\n`);
        for (const [s, e] of held) process.stderr.write(`paused ${abs(s)} .. ${abs(e)} (${(e - s).toFixed(1)} ms)\n`);
        for (const m of versionSeen) process.stderr.write(`${m}\n`);
        for (const [i, [name, from]] of phaseStarts.entries()) {
          const to = phaseStarts[i + 1]?.[1] ?? performance.now();
          const inPhase = samples.filter(([s]) => s >= from && s < to);
          const all = inPhase.map(([, l]) => l);
          const movingSlot = inPhase.filter(([, , m]) => m === 1).map(([, l]) => l);
          process.stderr.write(`${name.padEnd(16)} ${Math.round(to - from)} ms: writes ${all.length}, p99 ${all.length ? percentile(all, 0.99).toFixed(1) : '-'} ms, moving-slot p99 ${movingSlot.length ? percentile(movingSlot, 0.99).toFixed(1) : '-'} ms, over 2x the p99 before ${all.filter((l) => l > 2 * p99Before).length}\n`);
        }
      }
      // With RESHARDING_SAMPLES=<file> (and RESHARDING_DEBUG): every write [start, latency, moving slot?] and the phase starts, as JSON, for a timeline (the gentle move's in <file>.gentle.json).
      if (debug && process.env.RESHARDING_SAMPLES !== undefined) {
        const file = spec.name === 'busy' ? process.env.RESHARDING_SAMPLES : `${process.env.RESHARDING_SAMPLES}.${spec.name}.json`;
        writeFileSync(file, JSON.stringify({ p99Before, samples, phaseStarts, gcs }));
      }
      if (!result.ok) throw new Error(`move ${spec.name} failed: ${JSON.stringify(result.error)}`);
      await new Promise((r) => setTimeout(r, 500));
      // Where the slow writes of the move were: per phase of the move (batches summed), the writes
      // that started in it, their p99 and how many took over twice the p99 before the move. The
      // one-off steps (the capture trigger's install at the start of "capturing", the fence in
      // "cutover") and the sustained ones (the copy, the clean-up) show apart.
      const byPhase: Record<string, number> = {};
      const phaseWrites = new Map<string, number[]>();
      for (const [i, [name, from]] of phaseStarts.entries()) {
        const to = phaseStarts[i + 1]?.[1] ?? moveEnd;
        const key = name.replace(/^\d+:/, '');
        phaseWrites.set(key, [...(phaseWrites.get(key) ?? []), ...samples.filter(([st]) => st >= from && st < to).map(([, l]) => l)]);
      }
      for (const [key, ls] of phaseWrites) {
        byPhase[`phase_${key}_writes`] = ls.length;
        byPhase[`phase_${key}_p99Ms`] = round(percentile(ls, 0.99));
        byPhase[`phase_${key}_overTwiceP99Before`] = ls.filter((l) => l > 2 * p99Before).length;
      }
      const pauses = held.map(([s, e]) => e - s);
      return {
        stealBefore: stealPercent(ticksBefore, ticksDuring),
        stealDuring: stealPercent(ticksDuring, ticksAfter),
        p99Before,
        p99During: percentile(latency.during!, 0.99),
        opsBefore: latency.before!.length,
        opsDuring: latency.during!.length,
        overTwice: latency.during!.filter((l) => l > 2 * p99Before).length,
        byPhase,
        pauses,
        durationMillis: result.durationMillis,
      };
    }

    stop = true;
    await load;
    gcObserver?.disconnect();
    await watch.close();
    await debugWatch?.close();
    await db.destroy();

    // Lost and duplicated rows against the writers' log of acknowledged writes.
    const found = new Map<number, number[]>();
    for (const p of pools) {
      const { rows } = await p.query<{ id: string; score: number }>(`select id, score from users where name = 'load'`);
      for (const r of rows) found.set(Number(r.id), [...(found.get(Number(r.id)) ?? []), r.score]);
    }
    let lost = 0;
    for (const [id, score] of acked) if (found.get(id)?.[0] !== score) lost++;
    const duplicated = [...found.values()].filter((v) => v.length > 1).length;
    for (const p of pools) await p.end();
    await src.end();
    await dst.end();
    await catalog.close();

    const [busy, gentle] = outcomes as [LoadedMoveOutcome, LoadedMoveOutcome];
    const results = {
      loadAverageAtStart: round(loadAtStart),
      loadAverageAtEnd: round(loadavg()[0]!),
      cpuStealPercentBefore: busy.stealBefore,
      cpuStealPercentDuring: busy.stealDuring,
      rows: ROWS,
      baselineCopyRowsPerSecond: Math.round(baselineRowsPerSecond),
      moverCopyRowsPerSecond: Math.round(moverRowsPerSecond),
      movedRows: moveA.rowsCopied,
      captureOffUpdateP50Ms: round(percentile(off, 0.5), 3),
      captureOnUpdateP50Ms: round(percentile(on, 0.5), 3),
      captureServerOffMicros: round(percentile(server.off, 0.5), 1),
      captureServerOnMovingMicros: round(percentile(server.onMoving, 0.5), 1),
      captureServerOnOtherMicros: round(percentile(server.onOther, 0.5), 1),
      guardOffReadP50Ms: round(percentile(bare, 0.5), 3),
      guardOnReadP50Ms: round(percentile(guarded, 0.5), 3),
      appP99BeforeMs: round(busy.p99Before),
      appP99DuringMs: round(busy.p99During),
      appOpsBefore: busy.opsBefore,
      appOpsDuring: busy.opsDuring,
      appOverTwiceP99BeforeDuring: busy.overTwice,
      ...busy.byPhase,
      cutoverPausedWrites: busy.pauses.length,
      cutoverPauseP50Ms: round(percentile(busy.pauses, 0.5)),
      cutoverPauseP99Ms: round(percentile(busy.pauses, 0.99)),
      cutoverPauseMaxMs: round(Math.max(0, ...busy.pauses)),
      moveUnderLoadMillis: Math.round(busy.durationMillis),
      moveMaxRowsPerSecond: MOVE_ROWS_PER_SECOND,
      // The gentle move (GENTLE_ROWS_PER_SECOND), right after the busy one, with its own window before.
      gentleMaxRowsPerSecond: GENTLE_ROWS_PER_SECOND,
      gentleCpuStealPercentBefore: gentle.stealBefore,
      gentleCpuStealPercentDuring: gentle.stealDuring,
      gentleAppP99BeforeMs: round(gentle.p99Before),
      gentleAppP99DuringMs: round(gentle.p99During),
      gentleAppOpsDuring: gentle.opsDuring,
      gentleAppOverTwiceP99BeforeDuring: gentle.overTwice,
      ...Object.fromEntries(Object.entries(gentle.byPhase).map(([k, v]) => [`gentle_${k}`, v])),
      gentleCutoverPausedWrites: gentle.pauses.length,
      gentleCutoverPauseP99Ms: round(percentile(gentle.pauses, 0.99)),
      gentleCutoverPauseMaxMs: round(Math.max(0, ...gentle.pauses)),
      gentleMoveUnderLoadMillis: Math.round(gentle.durationMillis),
      appWriteRatePerSecond: WRITE_RATE,
      appIndependentArrivals: ARRIVALS === 'independent' ? 1 : 0,
      lost,
      duplicated,
    };
    const ratios = {
      copyRateVsPlainCopy: round(moverRowsPerSecond / baselineRowsPerSecond),
      captureWriteOverhead: round(percentile(on, 0.5) / percentile(off, 0.5)),
      guardReadOverhead: round(percentile(guarded, 0.5) / percentile(bare, 0.5)),
      appP99DuringVsBefore: round(busy.p99During / busy.p99Before),
      appP99DuringVsBeforeGentle: round(gentle.p99During / gentle.p99Before),
    };
    // Not a target of the mover: a run whose CPU the hypervisor gave to other guests (steal) measured
    // them, not the move (one run here had 22% steal before the move and a p99 "before" of 16 ms,
    // so "during" came out lower than "before"); it cannot pass whatever its ratios. The targets
    // hold for both moves.
    const targets = { copyRateVsPlainCopyMin: 0.5, cutoverPauseP99MaxMs: 50, appP99DuringVsBeforeMax: 2, lost: 0, duplicated: 0, cpuStealPercentMax: 5 };
    const pass =
      [busy.stealBefore, busy.stealDuring, gentle.stealBefore, gentle.stealDuring].every((steal) => steal <= targets.cpuStealPercentMax) &&
      ratios.copyRateVsPlainCopy >= targets.copyRateVsPlainCopyMin &&
      results.cutoverPauseP99Ms <= targets.cutoverPauseP99MaxMs &&
      results.gentleCutoverPauseP99Ms <= targets.cutoverPauseP99MaxMs &&
      ratios.appP99DuringVsBefore <= targets.appP99DuringVsBeforeMax &&
      ratios.appP99DuringVsBeforeGentle <= targets.appP99DuringVsBeforeMax &&
      lost === 0 &&
      duplicated === 0;
    const report = makeReport('resharding', { results, ratios, targets, pass });
    await writeReport(report);
    return report;
  } finally {
    await cluster.stop();
  }
}
