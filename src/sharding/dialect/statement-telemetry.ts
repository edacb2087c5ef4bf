/**
 * What each routed statement did, for operators: the `onRoute` hook (the plan and the servers
 * that ran it), an OpenTelemetry span, and the statement metrics ({@link ./statement-metrics}).
 *
 * Cheap when nothing listens: {@link StatementTelemetry.begin} returns `undefined` unless a route
 * hook is set, a span records or a metric is collected, and the server hooks the read path calls
 * ({@link observeServer}, {@link observePrimaryRetry}) return at once while no statement is observed.
 * A statement's observation rides on its plan (a slot keyed by a private symbol; plans are made
 * per statement), so concurrent statements on one connection keep theirs apart. Not a WeakMap: two
 * ephemeron entries per statement cost more in garbage collection than the rest of the observation.
 */
import { SpanKind, SpanStatusCode, context, trace, type Span } from '@opentelemetry/api';
import type { Clock } from '../../kernel/clock';
import { telemetryTracer, tracingActive } from '../../kernel/telemetry';
import type { ServerSpec, Shard } from '../../cluster/topology';
import { planMayWrite, type RoutePlan } from '../routing/route-planner';
import type { ReplicaStatus } from '../../replication/replica-router';
import { ATTR, FAN_OUT, POOL_CONNECTIONS, POOL_PENDING, READS, REPLICA_ELIGIBLE, REPLICA_LAG, REPLICA_STALENESS, STATEMENTS, STATEMENT_DURATION, STATEMENT_ERRORS } from './statement-metrics';

/** A server that ran (part of) a statement. */
export interface RouteServer {
  readonly shardId: string;
  /** `primary` or `replica` of its shard. */
  readonly role: 'primary' | 'replica';
  /** The server's URL with its password replaced by `***`. */
  readonly redactedUrl: string;
}

/** What {@link RouteListener} receives once a statement settled. */
export interface RouteEvent {
  /** The routing decision (kind, statement, table, shards, keys). */
  readonly plan: RoutePlan;
  /** The servers that ran it, in the order they were chosen (a replica then its primary when the replica failed the read). */
  readonly servers: readonly RouteServer[];
  /** Reads the primary answered because the chosen replica could not. */
  readonly primaryRetries: number;
  /** From routing to the (merged) result, in ms. */
  readonly durationMillis: number;
  /** The error the statement failed with; `undefined` when it succeeded. */
  readonly error: unknown;
}

/** The `onRoute` option of ShardedDialectConfig: called once per statement, after it settled. */
export type RouteListener = (event: RouteEvent) => void;

/** Why a plain read went where it went; see READS. */
type ReadReason = 'replica' | 'replicas_off' | 'no_replicas' | 'no_eligible_replica' | 'read_your_writes' | 'primary_only' | 'session' | 'transaction' | 'replica_failed';

/** What the read path's runtime tells of a read, for its reason. */
export interface ReadContext {
  /** Present when replica reads are on. */
  readonly replicas: unknown;
  /** The caller's read-your-writes context, if any. */
  readonly readYourWritesContext: { requiredPosition(shardId: string): bigint | undefined } | undefined;
}

const OBSERVATION = Symbol('kysely-scale.statementObservation');
/** A plan carrying the observation of its statement. */
interface ObservedPlan {
  [OBSERVATION]?: StatementObservation | undefined;
}

function observationOf(plan: RoutePlan): StatementObservation | undefined {
  return (plan as ObservedPlan)[OBSERVATION];
}
/** Statements being observed now: while 0, the read path's hooks return at once. */
let observing = 0;

const primaryServers = new WeakMap<ServerSpec, RouteServer>();
const replicaServers = new WeakMap<ServerSpec, RouteServer>();

function routeServer(shard: Shard, server: ServerSpec): RouteServer {
  const primary = server === shard.primary;
  const cache = primary ? primaryServers : replicaServers;
  let found = cache.get(server);
  if (found === undefined) {
    found = Object.freeze({ shardId: shard.id, role: primary ? 'primary' : 'replica', redactedUrl: server.redactedUrl });
    cache.set(server, found);
  }
  return found;
}

/** Live state of a dialect that its gauges report at each collection. */
export interface DialectGaugeSources {
  /** Connections of each server pool. */
  pools(): readonly { readonly redactedUrl: string; readonly used: number; readonly idle: number; readonly waiting: number }[];
  /** The last replica measurements. */
  replicas(): readonly ReplicaStatus[];
}

/** The telemetry of one dialect's statements. */
export class StatementTelemetry {
  readonly #onRoute: RouteListener | undefined;
  readonly #clock: Clock;
  readonly #untrack: (() => void)[];

  constructor(onRoute: RouteListener | undefined, clock: Clock, sources: DialectGaugeSources) {
    this.#onRoute = onRoute;
    this.#clock = clock;
    this.#untrack = [
      POOL_CONNECTIONS.observeWith((observe) => {
        for (const pool of sources.pools()) {
          observe(pool.used, { [ATTR.poolName]: pool.redactedUrl, [ATTR.connectionState]: 'used' });
          observe(pool.idle, { [ATTR.poolName]: pool.redactedUrl, [ATTR.connectionState]: 'idle' });
        }
      }),
      POOL_PENDING.observeWith((observe) => {
        for (const pool of sources.pools()) observe(pool.waiting, { [ATTR.poolName]: pool.redactedUrl });
      }),
      REPLICA_LAG.observeWith((observe) => {
        for (const r of sources.replicas()) if (r.lagBytes !== null) observe(r.lagBytes, { [ATTR.shardId]: r.shardId, [ATTR.poolName]: r.server });
      }),
      REPLICA_STALENESS.observeWith((observe) => {
        for (const r of sources.replicas()) if (r.lagMillis !== null) observe(r.lagMillis / 1000, { [ATTR.shardId]: r.shardId, [ATTR.poolName]: r.server });
      }),
      REPLICA_ELIGIBLE.observeWith((observe) => {
        for (const r of sources.replicas()) observe(r.eligible ? 1 : 0, { [ATTR.shardId]: r.shardId, [ATTR.poolName]: r.server });
      }),
    ];
  }

  /** Counts a statement the router refused (no shard key, unroutable, …) before it ran anywhere. */
  refused(error: unknown): void {
    if (STATEMENT_ERRORS.enabled) STATEMENT_ERRORS.record(1, { [ATTR.errorType]: errorType(error), [ATTR.routeKind]: 'refused' });
  }

  /** Stops reporting the dialect's gauges (it was destroyed). */
  close(): void {
    for (const untrack of this.#untrack) untrack();
  }

  /** Whether a span or a metric would read a statement's table and keys now (an SDK or a metrics reader is there). */
  get needsPlanDetails(): boolean {
    return tracingActive() || STATEMENT_DURATION.enabled;
  }

  /** Starts observing a statement; `undefined` when no hook, span or metric would see it. */
  begin(plan: RoutePlan): StatementObservation | undefined {
    // Without an SDK not even a no-op span is made: a look at the global providers is cheaper.
    const tracing = tracingActive();
    if (!tracing && this.#onRoute === undefined && !STATEMENT_DURATION.enabled) return undefined;
    let span: Span | undefined;
    if (tracing) {
      span = telemetryTracer().startSpan(spanName(plan), { kind: SpanKind.CLIENT });
      if (!span.isRecording()) span = undefined;
      if (span === undefined && this.#onRoute === undefined && !STATEMENT_DURATION.enabled) return undefined;
    }
    const observation = new StatementObservation(plan, span, this.#onRoute, this.#clock);
    (plan as ObservedPlan)[OBSERVATION] = observation;
    observing++;
    return observation;
  }
}

/** One statement being observed. */
export class StatementObservation {
  readonly #plan: RoutePlan;
  readonly #span: Span | undefined;
  readonly #onRoute: RouteListener | undefined;
  readonly #clock: Clock;
  readonly #started: number;
  readonly servers: RouteServer[] = [];
  primaryRetries = 0;
  #ended = false;

  constructor(plan: RoutePlan, span: Span | undefined, onRoute: RouteListener | undefined, clock: Clock) {
    this.#plan = plan;
    this.#span = span;
    this.#onRoute = onRoute;
    this.#clock = clock;
    this.#started = clock.monotonicNow();
    if (span !== undefined) span.setAttributes(planAttributes(plan));
  }

  /**
   * Runs the statement (`run`) with its span as the active one, so a pg instrumentation's spans
   * nest under it, and ends the observation when it settles; the result passes through unchanged.
   */
  execute<T>(run: () => Promise<T>): Promise<T> {
    let result: Promise<T>;
    try {
      result = this.#span === undefined ? run() : context.with(trace.setSpan(context.active(), this.#span), run);
    } catch (error) {
      result = Promise.reject(error);
    }
    return result.then(
      (value) => {
        this.end(undefined);
        return value;
      },
      (error: unknown) => {
        this.end(error ?? new Error('statement failed'));
        throw error;
      },
    );
  }

  /** Passes a streamed statement's chunks through; the observation ends when the stream does (a reader that stops early ends it too). */
  async *stream<T>(chunks: AsyncGenerator<T>): AsyncGenerator<T> {
    try {
      yield* chunks;
    } catch (error) {
      this.end(error ?? new Error('stream failed'));
      throw error;
    } finally {
      this.end(undefined);
    }
  }

  /** Records a server the statement runs on (a statement may run on several). */
  noteServer(shard: Shard, server: ServerSpec, runtime: ReadContext | null, inSession: boolean): void {
    const chosen = routeServer(shard, server);
    this.servers.push(chosen);
    if (planMayWrite(this.#plan) || !READS.enabled) return;
    READS.record(1, { [ATTR.shardId]: shard.id, [ATTR.role]: chosen.role, [ATTR.readReason]: readReason(this.#plan, shard, chosen, runtime, inSession) });
  }

  /** Records that the primary answered a read its replica failed. */
  notePrimaryRetry(shard: Shard): void {
    this.primaryRetries++;
    this.servers.push(routeServer(shard, shard.primary));
    if (READS.enabled) READS.record(1, { [ATTR.shardId]: shard.id, [ATTR.role]: 'primary', [ATTR.readReason]: 'replica_failed' });
  }

  /** Ends the observation (once): metrics, span, then the route hook. `error` is `undefined` on success. */
  end(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    observing--;
    // The plan outlives the statement in the route event (a hook may keep it); the observation need not.
    (this.#plan as ObservedPlan)[OBSERVATION] = undefined;
    const durationMillis = this.#clock.monotonicNow() - this.#started;
    const plan = this.#plan;
    if (STATEMENT_DURATION.enabled) recordMetrics(plan, this.servers, durationMillis, error);
    const span = this.#span;
    if (span !== undefined) {
      span.setAttributes(serverAttributes(this.servers, this.primaryRetries));
      if (error !== undefined) {
        span.setAttribute(ATTR.errorType, errorType(error));
        const sqlState = sqlStateOf(error);
        if (sqlState !== undefined) span.setAttribute(ATTR.statusCode, sqlState);
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      }
      span.end();
    }
    const onRoute = this.#onRoute;
    if (onRoute === undefined) return;
    try {
      onRoute({ plan, servers: this.servers, primaryRetries: this.primaryRetries, durationMillis, error });
    } catch (hookError) {
      // A failing hook must not fail the statement it observes.
      process.emitWarning(`kysely-scale: onRoute threw: ${hookError instanceof Error ? hookError.message : String(hookError)}`, 'KyselyScaleTelemetryWarning');
    }
  }
}

/** Whether any statement is being observed now (the read path's hooks have something to tell). */
export function statementsObserved(): boolean {
  return observing > 0;
}

/** The read path chose `server` of `shard` for the statement planned as `plan` (no-op unless that statement is observed). */
export function observeServer(plan: RoutePlan, shard: Shard, server: ServerSpec, runtime: ReadContext, inSession: boolean): void {
  if (observing === 0) return;
  observationOf(plan)?.noteServer(shard, server, runtime, inSession);
}

/** A statement of a transaction runs on `shard`'s primary. */
export function observeTransactionServer(plan: RoutePlan, shard: Shard): void {
  if (observing === 0) return;
  observationOf(plan)?.noteServer(shard, shard.primary, null, false);
}

/** The primary of `shard` answers a read of the statement planned as `plan` after its replica failed it. */
export function observePrimaryRetry(plan: RoutePlan, shard: Shard): void {
  if (observing === 0) return;
  observationOf(plan)?.notePrimaryRetry(shard);
}

function readReason(plan: RoutePlan, shard: Shard, chosen: RouteServer, runtime: ReadContext | null, inSession: boolean): ReadReason {
  if (chosen.role === 'replica') return 'replica';
  if (runtime === null) return 'transaction';
  if (runtime.replicas === undefined) return 'replicas_off';
  if (inSession) return 'session';
  if (plan.primaryOnly === true) return 'primary_only';
  if (shard.replicas.length === 0) return 'no_replicas';
  if (runtime.readYourWritesContext?.requiredPosition(shard.id) !== undefined) return 'read_your_writes';
  return 'no_eligible_replica';
}

const OPERATION_NAMES: Readonly<Record<RoutePlan['statement'], string | undefined>> = Object.freeze({
  select: 'SELECT',
  insert: 'INSERT',
  update: 'UPDATE',
  delete: 'DELETE',
  merge: 'MERGE',
  ddl: undefined,
  raw: undefined,
});

/** `{operation} {table}` as the semantic conventions name database spans, else `postgresql`. */
function spanName(plan: RoutePlan): string {
  const operation = OPERATION_NAMES[plan.statement];
  if (operation === undefined) return plan.statement === 'ddl' ? 'DDL' : 'postgresql';
  return plan.table === null ? operation : `${operation} ${plan.table}`;
}

function shardsOf(plan: RoutePlan): readonly Shard[] {
  if (plan.kind === 'single') return [plan.shard];
  if (plan.kind === 'split') return plan.parts.map((p) => p.shard);
  return plan.shards;
}

function planAttributes(plan: RoutePlan): Record<string, string | number | string[]> {
  const shards = shardsOf(plan);
  const attributes: Record<string, string | number | string[]> = {
    [ATTR.system]: 'postgresql',
    [ATTR.routeKind]: plan.kind,
    [ATTR.fanOut]: shards.length,
  };
  const operation = OPERATION_NAMES[plan.statement];
  if (operation !== undefined) attributes[ATTR.operation] = operation;
  if (plan.table !== null) attributes[ATTR.collection] = plan.table;
  if (shards.length === 1) attributes[ATTR.shardId] = shards[0]!.id;
  else attributes[ATTR.shardIds] = shards.map((s) => s.id);
  return attributes;
}

function serverAttributes(servers: readonly RouteServer[], primaryRetries: number): Record<string, string | number> {
  const roles = new Set(servers.map((s) => s.role));
  const attributes: Record<string, string | number> = { [ATTR.primaryRetries]: primaryRetries };
  if (roles.size > 0) attributes[ATTR.role] = roles.size === 1 ? [...roles][0]! : 'mixed';
  const distinct = new Set(servers.map((s) => s.redactedUrl));
  if (distinct.size === 1) {
    const address = hostAndPort(servers[0]!.redactedUrl);
    if (address !== undefined) {
      attributes[ATTR.serverAddress] = address.host;
      if (address.port !== undefined) attributes[ATTR.serverPort] = address.port;
    }
  }
  return attributes;
}

function hostAndPort(url: string): { host: string; port: number | undefined } | undefined {
  try {
    const parsed = new URL(url);
    return { host: parsed.hostname, port: parsed.port === '' ? undefined : Number(parsed.port) };
  } catch {
    return undefined;
  }
}

function recordMetrics(plan: RoutePlan, servers: readonly RouteServer[], durationMillis: number, error: unknown): void {
  const operation = OPERATION_NAMES[plan.statement] ?? plan.statement.toUpperCase();
  const duration: Record<string, string> = { [ATTR.system]: 'postgresql', [ATTR.operation]: operation, [ATTR.routeKind]: plan.kind };
  if (plan.table !== null) duration[ATTR.collection] = plan.table;
  const type = error === undefined ? undefined : errorType(error);
  if (type !== undefined) duration[ATTR.errorType] = type;
  STATEMENT_DURATION.record(durationMillis / 1000, duration);
  const outcome = error === undefined ? 'ok' : 'error';
  for (const server of servers) STATEMENTS.record(1, { [ATTR.shardId]: server.shardId, [ATTR.role]: server.role, [ATTR.outcome]: outcome, [ATTR.operation]: operation });
  if (type !== undefined) STATEMENT_ERRORS.record(1, { [ATTR.errorType]: type, [ATTR.operation]: operation, [ATTR.routeKind]: plan.kind });
  if (plan.kind !== 'single') FAN_OUT.record(shardsOf(plan).length, { [ATTR.routeKind]: plan.kind, [ATTR.operation]: operation });
}

/** A stable, low-cardinality name for an error: its kysely-scale code or SQLSTATE, else its class. */
export function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  if (error instanceof Error) return error.name || error.constructor.name;
  return '_OTHER';
}

function sqlStateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}
