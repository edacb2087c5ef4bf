/**
 * Balancer benchmark: a discrete-event simulation that drives the real Balancer and strategies on
 * a virtual clock, then a short loopback run with real HTTP servers to confirm the direction.
 * (Over 400 lines: one suite, its scenarios and its report belong together; it is not in src/.)
 *
 * Scenario "slow": 10 instances, each a FIFO queue with 4 service slots and exponential service
 * times of mean 4 ms, except one whose mean is 40 ms; Poisson arrivals at 70% of total capacity.
 * Scenario "errors": 10 equal instances; one answers half of its requests with a fast error.
 * Every strategy sees the same arrivals and the same per-request work for a given seed.
 *
 * Fault scenarios (closed loop, like callers waiting for their answer): 32 callers over 5
 * instances answering in 150 ms on average (exponential); from 10 s on one instance either
 * blackholes (accepts calls, never answers) or fails every call in 0.1 ms. Each call has a 1 s
 * deadline and, as with the balanced fetch (which retries neither a 5xx answer nor a timeout after
 * sending), no retry: a request's latency is the time to a good answer, and a failed one counts as
 * the whole deadline. The strategy alone is compared (no ejection, no health checks, no slow
 * start), with the same per-caller work for every strategy.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { Balancer } from '../src/balancer/balancer';
import { ManualClock, seededRandom, systemClock, type Clock } from '../src/kernel/clock';
import type { Strategy } from '../src/balancer/balancer-strategy';
import { createBalancedFetch } from '../src/balancer/http/http-client';
import { leastConnections } from '../src/balancer/strategies/least-connections';
import { peakEwma } from '../src/balancer/strategies/peak-ewma';
import { powerOfTwoChoices } from '../src/balancer/strategies/power-of-two-choices';
import { weightedRandom } from '../src/balancer/strategies/random';
import { roundRobin } from '../src/balancer/strategies/round-robin';
import { makeReport, writeReport, type BenchReport } from './bench-report';

const INSTANCES = 10;
const SLOTS = 4;
const MEAN_SERVICE_MILLIS = 4;
const SLOW_FACTOR = 10;
const LOAD = 0.7;
const REQUESTS = 200_000;
const SEEDS = [1, 2, 3, 4, 5];
const FAST_ERROR_FACTOR = 0.05;

type StrategyKey = 'roundRobin' | 'random' | 'leastConnections' | 'powerOfTwo' | 'responseTime';
const STRATEGIES: Readonly<Record<StrategyKey, (clock: Clock, seed: number) => Strategy>> = {
  roundRobin: () => roundRobin(),
  random: (_c, seed) => weightedRandom({ random: seededRandom(seed * 7919) }),
  leastConnections: () => leastConnections(),
  powerOfTwo: (_c, seed) => powerOfTwoChoices({ random: seededRandom(seed * 7919) }),
  responseTime: (clock) => peakEwma({ clock }),
};

/** Pre-drawn workload: arrival times, unit-mean work and an error draw per request. */
interface Workload {
  readonly arrivals: Float64Array;
  readonly work: Float64Array;
  readonly errorDraw: Float64Array;
}

function workload(seed: number, ratePerMilli: number): Workload {
  const random = seededRandom(seed);
  const exp = (): number => -Math.log(1 - random());
  const arrivals = new Float64Array(REQUESTS);
  const work = new Float64Array(REQUESTS);
  const errorDraw = new Float64Array(REQUESTS);
  let t = 0;
  for (let i = 0; i < REQUESTS; i++) {
    t += exp() / ratePerMilli;
    arrivals[i] = t;
    work[i] = exp();
    errorDraw[i] = random();
  }
  return { arrivals, work, errorDraw };
}

/** A binary min-heap of completion events. */
class EventHeap {
  readonly #times: number[] = [];
  readonly #ids: number[] = [];
  get size(): number {
    return this.#times.length;
  }
  peekTime(): number {
    return this.#times[0] ?? Infinity;
  }
  push(time: number, id: number): void {
    const t = this.#times;
    const d = this.#ids;
    t.push(time);
    d.push(id);
    let i = t.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((t[p] as number) <= time) break;
      t[i] = t[p] as number;
      d[i] = d[p] as number;
      i = p;
    }
    t[i] = time;
    d[i] = id;
  }
  pop(): number {
    const t = this.#times;
    const d = this.#ids;
    const top = d[0] as number;
    const lastT = t.pop() as number;
    const lastD = d.pop() as number;
    if (t.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= t.length) break;
        const r = l + 1;
        const c = r < t.length && (t[r] as number) < (t[l] as number) ? r : l;
        if ((t[c] as number) >= lastT) break;
        t[i] = t[c] as number;
        d[i] = d[c] as number;
        i = c;
      }
      t[i] = lastT;
      d[i] = lastD;
    }
    return top;
  }
}

interface ScenarioSpec {
  /** Mean service time of instance k, in ms. */
  readonly meanMillis: (k: number) => number;
  /** Whether request i on instance k fails fast. */
  readonly fails: (k: number, draw: number) => boolean;
}

interface SimResult {
  readonly latencies: Float64Array;
  readonly perInstance: Uint32Array;
  readonly errors: number;
}

/** Runs one strategy over one workload through the real Balancer on a virtual clock. */
function simulate(spec: ScenarioSpec, w: Workload, makeStrategy: (clock: Clock) => Strategy): SimResult {
  let now = 0;
  const clock: Clock = { now: () => now, monotonicNow: () => now, setTimeout: () => () => undefined };
  const balancer = new Balancer({
    clock,
    strategy: makeStrategy(clock),
    instances: Array.from({ length: INSTANCES }, (_, k) => ({ id: `i${k}`, address: `sim://${k}` })),
    outlierEjection: false,
    slowStart: false,
  });
  const index = new Map(balancer.instances().map((inst, k) => [inst.id, k]));
  const busy = new Uint8Array(INSTANCES);
  const queues: number[][] = Array.from({ length: INSTANCES }, () => []);
  const instanceOf = new Int32Array(REQUESTS);
  const failed = new Uint8Array(REQUESTS);
  const releases: Array<((ok: boolean) => void) | undefined> = new Array(REQUESTS);
  const latencies = new Float64Array(REQUESTS);
  const perInstance = new Uint32Array(INSTANCES);
  const heap = new EventHeap();
  let errors = 0;

  const start = (i: number, k: number): void => {
    busy[k] = (busy[k] as number) + 1;
    const fails = spec.fails(k, w.errorDraw[i] as number);
    failed[i] = fails ? 1 : 0;
    const service = (w.work[i] as number) * spec.meanMillis(k) * (fails ? FAST_ERROR_FACTOR : 1);
    heap.push(now + service, i);
  };

  let next = 0;
  while (next < REQUESTS || heap.size > 0) {
    const arrival = next < REQUESTS ? (w.arrivals[next] as number) : Infinity;
    if (arrival <= heap.peekTime()) {
      now = arrival;
      const i = next++;
      const lease = balancer.acquire();
      const k = index.get(lease.instance.id) as number;
      instanceOf[i] = k;
      releases[i] = lease.release;
      perInstance[k] = (perInstance[k] as number) + 1;
      if ((busy[k] as number) < SLOTS) start(i, k);
      else (queues[k] as number[]).push(i);
    } else {
      now = heap.peekTime();
      const i = heap.pop();
      const k = instanceOf[i] as number;
      latencies[i] = now - (w.arrivals[i] as number);
      if (failed[i] === 1) errors++;
      (releases[i] as (ok: boolean) => void)(failed[i] === 0);
      releases[i] = undefined;
      busy[k] = (busy[k] as number) - 1;
      const queued = (queues[k] as number[]).shift();
      if (queued !== undefined) start(queued, k);
    }
  }
  return { latencies, perInstance, errors };
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

interface Summary {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly share: number;
  readonly errorRate: number;
}

function runScenario(spec: ScenarioSpec, rate: number, watched: number): Record<StrategyKey, Summary> {
  const out = {} as Record<StrategyKey, Summary>;
  const workloads = SEEDS.map((seed) => workload(seed, rate));
  for (const key of Object.keys(STRATEGIES) as StrategyKey[]) {
    const all = new Float64Array(REQUESTS * SEEDS.length);
    let toWatched = 0;
    let errors = 0;
    SEEDS.forEach((seed, s) => {
      const r = simulate(spec, workloads[s] as Workload, (clock) => STRATEGIES[key](clock, seed));
      all.set(r.latencies, s * REQUESTS);
      toWatched += r.perInstance[watched] as number;
      errors += r.errors;
    });
    all.sort();
    out[key] = {
      p50: quantile(all, 0.5),
      p99: quantile(all, 0.99),
      p999: quantile(all, 0.999),
      share: toWatched / all.length,
      errorRate: errors / all.length,
    };
    process.stdout.write(
      `  ${key.padEnd(17)} p50 ${out[key].p50.toFixed(2)} ms  p99 ${out[key].p99.toFixed(2)} ms  p99.9 ${out[key].p999.toFixed(2)} ms  share ${(out[key].share * 100).toFixed(2)}%  errors ${(out[key].errorRate * 100).toFixed(2)}%\n`,
    );
  }
  return out;
}

// ---- fault scenarios: blackhole and fast failure ------------------------------------------------

const FAULT_INSTANCES = 5;
const FAULT_CALLERS = 32;
const FAULT_MEAN_MILLIS = 150;
const FAULT_FROM_MILLIS = 10_000;
const FAULT_UNTIL_MILLIS = 130_000;
const CALL_TIMEOUT_MILLIS = 1_000;
const FAST_FAILURE_MILLIS = 0.1;
const FAULT_SEEDS = [1, 2, 3];
const FAULT_STRATEGIES = ['roundRobin', 'random', 'leastConnections', 'powerOfTwo', 'responseTime'] as const satisfies readonly StrategyKey[];

type Fault = 'blackhole' | 'fastFailure';

interface FaultSummary {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  /** Share of the calls sent to the faulty instance after the fault began. */
  readonly share: number;
  /** Requests that failed (an error answer or the deadline). */
  readonly errorRate: number;
}

/** One strategy, one seed: latencies of the requests started after the fault began, and attempts to the faulty instance. */
function simulateFault(fault: Fault, seed: number, makeStrategy: (clock: Clock) => Strategy): { latencies: number[]; attempts: number; toFaulty: number; errors: number } {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: makeStrategy(clock),
    instances: Array.from({ length: FAULT_INSTANCES }, (_, k) => ({ id: `i${k}`, address: `sim://${k}` })),
    outlierEjection: false,
    slowStart: false,
  });
  const faulty = `i${FAULT_INSTANCES - 1}`;
  // Common random numbers: caller c's n-th request has the same work whatever the strategy.
  const draws = Array.from({ length: FAULT_CALLERS }, (_, c) => seededRandom(seed * 1_000 + c));
  const latencies: number[] = [];
  let attempts = 0;
  let toFaulty = 0;
  let errors = 0;

  const request = (caller: number): void => {
    const startedAt = clock.monotonicNow();
    const work = -Math.log(1 - (draws[caller] as () => number)()) * FAULT_MEAN_MILLIS;
    const lease = balancer.acquire();
    const id = lease.instance.id;
    const faultOn = id === faulty && startedAt >= FAULT_FROM_MILLIS;
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      cancelDeadline();
      cancelAnswer();
      lease.release(ok);
      if (startedAt >= FAULT_FROM_MILLIS) {
        attempts++;
        if (id === faulty) toFaulty++;
        if (!ok) errors++;
        // A request that fails gives its caller no answer: it costs the whole deadline.
        latencies.push(ok ? clock.monotonicNow() - startedAt : CALL_TIMEOUT_MILLIS);
      }
      if (clock.monotonicNow() < FAULT_UNTIL_MILLIS) request(caller);
    };
    const cancelDeadline = clock.setTimeout(() => settle(false), CALL_TIMEOUT_MILLIS);
    const cancelAnswer =
      faultOn && fault === 'blackhole' ? () => undefined : clock.setTimeout(() => settle(!faultOn), faultOn ? FAST_FAILURE_MILLIS : work);
  };
  for (let c = 0; c < FAULT_CALLERS; c++) request(c);
  clock.advance(FAULT_UNTIL_MILLIS + 2 * CALL_TIMEOUT_MILLIS);
  return { latencies, attempts, toFaulty, errors };
}

function runFault(fault: Fault): Record<(typeof FAULT_STRATEGIES)[number], FaultSummary> {
  const out = {} as Record<(typeof FAULT_STRATEGIES)[number], FaultSummary>;
  for (const key of FAULT_STRATEGIES) {
    const all: number[] = [];
    let attempts = 0;
    let toFaulty = 0;
    let errors = 0;
    for (const seed of FAULT_SEEDS) {
      const r = simulateFault(fault, seed, (clock) => STRATEGIES[key](clock, seed));
      for (const l of r.latencies) all.push(l);
      attempts += r.attempts;
      toFaulty += r.toFaulty;
      errors += r.errors;
    }
    const sorted = Float64Array.from(all).sort();
    out[key] = {
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      p999: quantile(sorted, 0.999),
      share: toFaulty / attempts,
      errorRate: errors / sorted.length,
    };
    process.stdout.write(
      `  ${key.padEnd(17)} p50 ${out[key].p50.toFixed(1)} ms  p99 ${out[key].p99.toFixed(1)} ms  p99.9 ${out[key].p999.toFixed(1)} ms  share to faulty ${(out[key].share * 100).toFixed(3)}%  errors ${(out[key].errorRate * 100).toFixed(3)}%\n`,
    );
  }
  return out;
}

// ---- loopback run ----------------------------------------------------------------------------

async function startServer(meanMillis: number, slots: number, seed: number): Promise<{ server: Server; url: string }> {
  const random = seededRandom(seed);
  let busy = 0;
  const waiting: Array<() => void> = [];
  const server = createServer((req, res) => {
    const serve = (): void => {
      busy++;
      setTimeout(() => {
        busy--;
        waiting.shift()?.();
        res.end('ok');
      }, -Math.log(1 - random()) * meanMillis);
    };
    if (busy < slots) serve();
    else waiting.push(serve);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

interface LoopbackSummary {
  readonly p99: number;
  readonly share: number;
}

async function loopback(): Promise<Record<'roundRobin' | 'leastConnections' | 'responseTime', LoopbackSummary>> {
  const count = 4;
  const meanMillis = 4;
  const servers = await Promise.all(
    Array.from({ length: count }, (_, k) => startServer(k === count - 1 ? meanMillis * SLOW_FACTOR : meanMillis, SLOTS, 100 + k)),
  );
  const agent = new Agent({ connections: 32 });
  const requests = 2_000;
  const concurrency = 8;
  const out = {} as Record<'roundRobin' | 'leastConnections' | 'responseTime', LoopbackSummary>;
  try {
    for (const key of ['roundRobin', 'leastConnections', 'responseTime'] as const) {
      const balancer = new Balancer({
        strategy: STRATEGIES[key](systemClock, 1),
        instances: servers.map((s, k) => ({ id: `s${k}`, address: s.url })),
        slowStart: false,
      });
      const fetch = createBalancedFetch({ balancer, dispatcher: agent });
      const latencies: number[] = [];
      let issued = 0;
      const worker = async (): Promise<void> => {
        while (issued < requests) {
          issued++;
          const t0 = performance.now();
          const response = await fetch('/');
          await response.text();
          latencies.push(performance.now() - t0);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const sorted = Float64Array.from(latencies).sort();
      const stats = balancer.stats();
      const slow = stats.instances.find((i) => i.id === `s${count - 1}`)?.totalRequests ?? 0;
      out[key] = { p99: quantile(sorted, 0.99), share: slow / stats.totalRequests };
      process.stdout.write(`  ${key.padEnd(17)} p99 ${out[key].p99.toFixed(2)} ms  share to slow ${(out[key].share * 100).toFixed(2)}%\n`);
    }
  } finally {
    await agent.close();
    for (const s of servers) {
      s.server.closeAllConnections();
      await new Promise<void>((resolve) => s.server.close(() => resolve()));
    }
  }
  return out;
}

/** Runs both simulated scenarios and the loopback check; writes bench/results/balancer.json. */
export async function run(): Promise<BenchReport> {
  const fastRate = SLOTS / MEAN_SERVICE_MILLIS;
  const slowCapacity = (INSTANCES - 1) * fastRate + fastRate / SLOW_FACTOR;
  const slowIndex = INSTANCES - 1;
  process.stdout.write(
    `scenario slow: ${INSTANCES} instances × ${SLOTS} slots, mean ${MEAN_SERVICE_MILLIS} ms, one ${SLOW_FACTOR}× slower, load ${LOAD}, ${REQUESTS} requests × ${SEEDS.length} seeds\n`,
  );
  const slow = runScenario(
    { meanMillis: (k) => (k === slowIndex ? MEAN_SERVICE_MILLIS * SLOW_FACTOR : MEAN_SERVICE_MILLIS), fails: () => false },
    LOAD * slowCapacity,
    slowIndex,
  );
  process.stdout.write(`scenario errors: instance 0 fails 50% of its requests fast (${FAST_ERROR_FACTOR}× service time)\n`);
  const errors = runScenario(
    { meanMillis: () => MEAN_SERVICE_MILLIS, fails: (k, draw) => k === 0 && draw < 0.5 },
    LOAD * INSTANCES * fastRate,
    0,
  );
  const faultSetup = `${FAULT_CALLERS} callers, ${FAULT_INSTANCES} instances, mean ${FAULT_MEAN_MILLIS} ms, deadline ${CALL_TIMEOUT_MILLIS} ms, ${FAULT_SEEDS.length} seeds`;
  process.stdout.write(`scenario blackhole: one instance never answers from 10 s on (${faultSetup})\n`);
  const blackhole = runFault('blackhole');
  process.stdout.write(`scenario fastFailure: one instance fails every call in ${FAST_FAILURE_MILLIS} ms from 10 s on (${faultSetup})\n`);
  const fastFailure = runFault('fastFailure');
  process.stdout.write('loopback: 4 real HTTP servers (4 slots, mean 4 ms, one 10× slower), 2000 requests, 8 concurrent\n');
  const real = await loopback();

  const results: Record<string, number> = {};
  for (const [key, s] of Object.entries(slow)) {
    results[`slow.${key}.p50Millis`] = round(s.p50);
    results[`slow.${key}.p99Millis`] = round(s.p99);
    results[`slow.${key}.p999Millis`] = round(s.p999);
    results[`slow.${key}.shareToSlow`] = round(s.share, 5);
  }
  for (const [key, s] of Object.entries(errors)) {
    results[`errors.${key}.shareToFailing`] = round(s.share, 5);
    results[`errors.${key}.errorRate`] = round(s.errorRate, 5);
    results[`errors.${key}.p99Millis`] = round(s.p99);
  }
  for (const [name, scenario] of [['blackhole', blackhole], ['fastFailure', fastFailure]] as const) {
    for (const [key, f] of Object.entries(scenario)) {
      results[`${name}.${key}.p50Millis`] = round(f.p50);
      results[`${name}.${key}.p99Millis`] = round(f.p99);
      results[`${name}.${key}.p999Millis`] = round(f.p999);
      results[`${name}.${key}.shareToFaulty`] = round(f.share, 5);
      results[`${name}.${key}.errorRate`] = round(f.errorRate, 5);
    }
  }
  for (const [key, s] of Object.entries(real)) {
    results[`loopback.${key}.p99Millis`] = round(s.p99);
    results[`loopback.${key}.shareToSlow`] = round(s.share, 5);
  }
  const ratios = {
    'slow.responseTime.p99/roundRobin.p99': round(slow.responseTime.p99 / slow.roundRobin.p99, 5),
    'slow.responseTime.p99/leastConnections.p99': round(slow.responseTime.p99 / slow.leastConnections.p99, 5),
    'slow.responseTime.shareToSlow': round(slow.responseTime.share, 5),
    'errors.responseTime.shareToFailing/fairShare': round(errors.responseTime.share / (1 / INSTANCES), 5),
    'loopback.responseTime.p99/roundRobin.p99': round(real.responseTime.p99 / real.roundRobin.p99, 5),
    'blackhole.responseTime.p99/leastConnections.p99': round(blackhole.responseTime.p99 / blackhole.leastConnections.p99, 5),
    'blackhole.responseTime.p99/roundRobin.p99': round(blackhole.responseTime.p99 / blackhole.roundRobin.p99, 5),
    'blackhole.responseTime.shareToFaulty': round(blackhole.responseTime.share, 5),
    'fastFailure.responseTime.p99/leastConnections.p99': round(fastFailure.responseTime.p99 / fastFailure.leastConnections.p99, 5),
    'fastFailure.responseTime.p99/roundRobin.p99': round(fastFailure.responseTime.p99 / fastFailure.roundRobin.p99, 5),
    'fastFailure.responseTime.shareToFaulty': round(fastFailure.responseTime.share, 5),
  };
  const targets = {
    'slow.responseTime.p99/roundRobin.p99': 0.15,
    'slow.responseTime.shareToSlow': 0.02,
    'errors.responseTime.shareToFailing/fairShare': 1,
    'loopback.responseTime.p99/roundRobin.p99': 1,
    'blackhole.responseTime.p99/leastConnections.p99': 1,
    'blackhole.responseTime.shareToFaulty': 0.01,
    'fastFailure.responseTime.p99/leastConnections.p99': 1,
    'fastFailure.responseTime.shareToFaulty': 0.01,
  };
  const pass =
    ratios['slow.responseTime.p99/roundRobin.p99'] <= targets['slow.responseTime.p99/roundRobin.p99'] &&
    ratios['slow.responseTime.shareToSlow'] <= targets['slow.responseTime.shareToSlow'] &&
    ratios['errors.responseTime.shareToFailing/fairShare'] <= targets['errors.responseTime.shareToFailing/fairShare'] &&
    ratios['loopback.responseTime.p99/roundRobin.p99'] < targets['loopback.responseTime.p99/roundRobin.p99'] &&
    ratios['blackhole.responseTime.p99/leastConnections.p99'] <= targets['blackhole.responseTime.p99/leastConnections.p99'] &&
    ratios['blackhole.responseTime.shareToFaulty'] <= targets['blackhole.responseTime.shareToFaulty'] &&
    ratios['fastFailure.responseTime.p99/leastConnections.p99'] <= targets['fastFailure.responseTime.p99/leastConnections.p99'] &&
    ratios['fastFailure.responseTime.shareToFaulty'] <= targets['fastFailure.responseTime.shareToFaulty'];
  const report = makeReport('balancer', { results, ratios, targets, pass });
  await writeReport(report);
  return report;
}

if (require.main === module) {
  run().catch((error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    process.exit(1);
  });
}
