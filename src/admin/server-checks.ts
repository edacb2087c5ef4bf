/**
 * What `init` verifies before it publishes a topology: every listed server answers (within the
 * deadlines of {@link withServerClient}: a frozen server is reported as not answering), each primary
 * is a primary (not in recovery), and each replica is a standby streaming WAL from the primary it
 * is listed under and names the same database. A catalog that names a standby as a primary, or a
 * replica of another shard, would send writes nowhere and reads to the wrong data. No database may
 * be listed twice (two shards on one database double every scatter count), however its URLs are
 * written: servers are told apart by what they say of themselves, not by their addresses.
 */
import { DeadlineError } from '../kernel/deadline';
import { redactText, redactUrl } from '../kernel/redact';
import { ServerCheckError, type ServerProblem } from './admin-errors';
import { isServerFailure, withServerClient, type ServerQueries } from './server-client';
import type { ServerClientOptions } from './server-client-options';

/** A shard as listed for a check: its primary's and replicas' URLs. */
export interface ShardServers {
  readonly id: string;
  readonly primary: string;
  readonly replicas: readonly string[];
}

/** What a server says of itself: which database a session is in, and which running server serves it. */
interface ServerIdentity {
  /** current_database() */
  readonly database: string;
  /**
   * The running server: its system identifier (null when this role may not read it) and
   * pg_postmaster_start_time() (microseconds). A streaming replica shares its primary's system
   * identifier, and a promoted copy keeps it, but not the start time.
   */
  readonly instance: string;
}

interface PrimaryFacts extends ServerIdentity {
  readonly inRecovery: boolean;
  readonly systemId: string | null;
  /** `application_name` of each standby streaming from it (pg_stat_replication). */
  readonly standbys: readonly string[];
}

interface ReplicaFacts extends ServerIdentity {
  readonly inRecovery: boolean;
  readonly systemId: string | null;
  /** pg_stat_wal_receiver; null when the server runs no WAL receiver. */
  readonly receiver: { status: string | null; senderHost: string | null; senderPort: number | null; conninfo: string | null } | null;
}

// pg_control_system() may be refused to roles without pg_monitor; the identifier check is then skipped.
async function systemId(client: ServerQueries): Promise<string | null> {
  try {
    const { rows } = await client.query<{ id: string }>('select system_identifier::text as id from pg_control_system()');
    return rows[0]?.id ?? null;
  } catch (error) {
    // A server that stopped answering is reported as such, not as a refused function.
    if (error instanceof DeadlineError || isServerFailure(error)) throw error;
    return null;
  }
}

const SELF = 'select pg_is_in_recovery() as in_recovery, current_database() as database, pg_postmaster_start_time()::text as started';

interface SelfRow {
  in_recovery: boolean;
  database: string;
  started: string;
}

async function primaryFacts(client: ServerQueries): Promise<PrimaryFacts> {
  const { rows } = await client.query<SelfRow>(SELF);
  const standbys = await client.query<{ application_name: string }>("select application_name from pg_stat_replication where state in ('streaming', 'catchup')");
  const id = await systemId(client);
  return { inRecovery: rows[0]!.in_recovery, systemId: id, ...identity(rows[0]!, id), standbys: standbys.rows.map((r) => r.application_name) };
}

function identity(row: SelfRow, id: string | null): ServerIdentity {
  return { database: row.database, instance: `${id ?? '?'} started ${row.started}` };
}

async function replicaFacts(client: ServerQueries): Promise<ReplicaFacts> {
  const { rows } = await client.query<SelfRow>(SELF);
  const receiver = await client.query<{ status: string | null; sender_host: string | null; sender_port: number | null; conninfo: string | null }>(
    'select status, sender_host, sender_port, conninfo from pg_stat_wal_receiver',
  );
  const r = receiver.rows[0];
  const id = await systemId(client);
  return {
    inRecovery: rows[0]!.in_recovery,
    systemId: id,
    ...identity(rows[0]!, id),
    receiver: r === undefined ? null : { status: r.status, senderHost: r.sender_host, senderPort: r.sender_port, conninfo: r.conninfo },
  };
}

function sameAddress(url: string, host: string | null, port: number | null): boolean {
  if (host === null || port === null) return false;
  const parsed = new URL(url);
  const loopback = (h: string): string => (h === 'localhost' || h === '::1' || h === '[::1]' ? '127.0.0.1' : h);
  return loopback(parsed.hostname) === loopback(host) && Number(parsed.port || 5432) === port;
}

/** Why `replica` is not a standby of `primary`, or undefined when it is. */
function replicaProblem(primary: PrimaryFacts, primaryUrl: string, replica: ReplicaFacts): { check: ServerProblem['check']; problem: string } | undefined {
  if (!replica.inRecovery) return { check: 'not-replica', problem: 'is not in recovery, so it is a primary, not a replica' };
  const receiver = replica.receiver;
  if (receiver === null) return { check: 'not-streaming', problem: 'runs no WAL receiver (pg_stat_wal_receiver is empty): it is not streaming from a primary' };
  if (receiver.status === null) {
    return { check: 'unverifiable', problem: 'hides its WAL receiver from this role: grant it pg_monitor (or pg_read_all_stats) so the replica can be verified' };
  }
  if (receiver.status !== 'streaming') return { check: 'not-streaming', problem: `is not streaming WAL (pg_stat_wal_receiver status "${receiver.status}")` };
  if (primary.systemId !== null && replica.systemId !== null && primary.systemId !== replica.systemId) {
    return { check: 'other-primary', problem: `belongs to another cluster (system identifier ${replica.systemId}; the primary's is ${primary.systemId})` };
  }
  // Behind a proxy or a container network the sender address differs: match the standby's name instead.
  const name = /application_name=(\S+)/.exec(receiver.conninfo ?? '')?.[1];
  if (sameAddress(primaryUrl, receiver.senderHost, receiver.senderPort) || (name !== undefined && primary.standbys.includes(name))) {
    if (replica.database === primary.database) return undefined;
    return {
      check: 'other-database',
      problem: `names database "${replica.database}", but its primary's is "${primary.database}": a replica serves its primary's database, so name that one`,
    };
  }
  const from = receiver.senderHost === null ? 'another server' : `${receiver.senderHost}:${receiver.senderPort ?? '?'}`;
  return {
    check: 'other-primary',
    problem: `streams from ${from}, not from this shard's primary (whose pg_stat_replication lists ${primary.standbys.length === 0 ? 'no standby' : `only ${primary.standbys.join(', ')}`})`,
  };
}

/**
 * Checks every server of `shards` (in parallel) and fails with one {@link ServerCheckError}
 * listing every problem found, each naming the shard, the role and the server (password redacted).
 */
export async function checkShardServers(shards: readonly ShardServers[], options: ServerClientOptions = {}): Promise<void> {
  const problems: ServerProblem[] = [];
  const answered: { shard: string; role: 'primary' | 'replica'; url: string; order: number; identity: ServerIdentity }[] = [];
  const note = (shard: string, role: 'primary' | 'replica', url: string, check: ServerProblem['check'], problem: string): void => {
    problems.push(Object.freeze({ shard, role, server: redactUrl(url), check, problem: redactText(problem, [url]) }));
  };
  await Promise.all(
    shards.map(async (shard) => {
      const label = (role: string, url: string): string => `${shard.id} ${role} ${redactUrl(url)}`;
      let primary: PrimaryFacts;
      try {
        primary = await withServerClient(shard.primary, `${shard.id} primary`, primaryFacts, options);
      } catch (error) {
        note(shard.id, 'primary', shard.primary, 'unreachable', `does not answer: ${(error as Error).message.replace(`${label('primary', shard.primary)}: `, '')}`);
        return;
      }
      answered.push({ shard: shard.id, role: 'primary', url: shard.primary, order: 0, identity: primary });
      if (primary.inRecovery) note(shard.id, 'primary', shard.primary, 'not-primary', 'is in recovery (a standby): list the server it replicates from as the primary');
      await Promise.all(
        shard.replicas.map(async (url, r) => {
          let replica: ReplicaFacts;
          try {
            replica = await withServerClient(url, `${shard.id} replica`, replicaFacts, options);
          } catch (error) {
            note(shard.id, 'replica', url, 'unreachable', `does not answer: ${(error as Error).message.replace(`${label('replica', url)}: `, '')}`);
            return;
          }
          answered.push({ shard: shard.id, role: 'replica', url, order: r + 1, identity: replica });
          // With a standby listed as the primary, only the replica's own role can still be checked.
          const found = primary.inRecovery ? (replica.inRecovery ? undefined : replicaProblem(primary, shard.primary, replica)) : replicaProblem(primary, shard.primary, replica);
          if (found !== undefined) note(shard.id, 'replica', url, found.check, found.problem);
        }),
      );
    }),
  );
  // Listing order, not answering order, decides which of two listings of one database is reported.
  const shardOrder = new Map(shards.map((s, i) => [s.id, i]));
  answered.sort((a, b) => shardOrder.get(a.shard)! - shardOrder.get(b.shard)! || a.order - b.order);
  const seen = new Map<string, (typeof answered)[number]>();
  for (const server of answered) {
    const key = `${server.identity.instance}/${server.identity.database}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, server);
      continue;
    }
    note(
      server.shard,
      server.role,
      server.url,
      'same-database',
      `is the same database ("${server.identity.database}" on the same running server) as ${first.shard} ${first.role} ${redactUrl(first.url)}: ` +
        'list every database once (two shards on one database would count each row twice)',
    );
  }
  if (problems.length > 0) {
    const order = new Map(shards.map((s, i) => [s.id, i]));
    problems.sort((a, b) => order.get(a.shard)! - order.get(b.shard)! || (a.role === b.role ? 0 : a.role === 'primary' ? -1 : 1));
    throw new ServerCheckError(problems);
  }
}
