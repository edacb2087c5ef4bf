import { join } from 'node:path';
import type { Deadline } from './cluster-wait';
import type { PgBinaries } from './local-binaries';
import { LocalServer } from './local-server';
import { runAs, writeOwnedFile, type ProcessOwner } from './process-owner';
import { waitForPostgres, waitForStreaming } from './pg-probe';

/** One local PostgreSQL server of the test cluster. */
export interface LocalPgServerSpec {
  /** `shard0-primary`, `shard0-replica1`, … (also the replica's `application_name`). */
  readonly name: string;
  /** Folder holding `data/`, `server.log` and the pid file. */
  readonly dir: string;
  readonly port: number;
  /** Set for a streaming replica: the port of its primary. */
  readonly primaryPort?: number;
  readonly bin: PgBinaries;
  readonly owner: ProcessOwner;
  readonly pidFile: string;
  /** Bound of a `start()` after the first. */
  readonly startTimeoutMillis: number;
}

/** Grace for a fast shutdown before SIGKILL; a test server with fsync=off stops in well under 1 s. */

/**
 * Settings for speed and test isolation. Durability is traded away (fsync, full_page_writes),
 * but synchronous_commit stays on: once COMMIT returns, pg_current_wal_lsn() covers it, which
 * read-your-writes by LSN relies on.
 */
function settings(spec: LocalPgServerSpec): string[] {
  const values: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '', // TCP only: no socket path length or permission trouble
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    shared_buffers: '32MB',
    jit: 'off',
    wal_level: 'replica',
    max_wal_senders: '10',
    // A replica that was stopped by a test catches up from the primary's kept WAL.
    wal_keep_size: '256MB',
    hot_standby: 'on',
    hot_standby_feedback: 'on',
    // A replica retries its primary every 5 s by default; tests restart primaries and wait for that.
    wal_retrieve_retry_interval: '200ms',
    log_line_prefix: '%m [%p] ',
  };
  if (spec.primaryPort !== undefined) {
    values['primary_conninfo'] = `host=127.0.0.1 port=${spec.primaryPort} user=postgres application_name=${spec.name}`;
  }
  return Object.entries(values).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}

/**
 * Creates a server's data folder (`<dir>/data`) as a copy of the template. A replica gets the
 * same copy plus `standby.signal`: the template is a cleanly shut down cluster, which is a valid
 * base backup, and its primary starts from that very checkpoint, so the replica streams from
 * there. Primaries and replicas can then start in parallel instead of waiting for pg_basebackup.
 */
export async function preparePgDataDir(
  owner: ProcessOwner,
  templateDir: string,
  dir: string,
  replica: boolean,
  deadline: Deadline,
): Promise<void> {
  const data = join(dir, 'data');
  await runAs(owner, 'cp', ['-R', '-p', templateDir, data], deadline.remainingMillis());
  if (replica) await writeOwnedFile(owner, join(data, 'standby.signal'), '');
}

/** A PostgreSQL server run as a local process (as the `postgres` user when we are root). */
export class LocalPgServer extends LocalServer {
  readonly url: string;

  constructor(override readonly spec: LocalPgServerSpec) {
    super(spec, {
      command: spec.bin.postgres,
      args: ['-D', join(spec.dir, 'data'), '-p', String(spec.port), ...settings(spec)],
      owner: spec.owner,
      pidFile: spec.pidFile,
      stopSignal: 'SIGINT', // fast shutdown: ends sessions, checkpoints, exits
      emergencySignal: 'SIGQUIT', // immediate shutdown
    });
    this.url = `postgres://postgres@127.0.0.1:${spec.port}/postgres`;
  }

  get isReplica(): boolean {
    return this.spec.primaryPort !== undefined;
  }

  /** Starts the process and waits until it accepts connections (and, with `streaming`, streams WAL). */
  startWithin(deadline: Deadline, options: { streaming?: boolean } = {}): Promise<void> {
    const address = { host: '127.0.0.1', port: this.port };
    return this.launch('postgres', async (abortReason) => {
      await waitForPostgres(address, `PostgreSQL ${this.spec.name} on 127.0.0.1:${this.port}`, deadline, abortReason);
      if (options.streaming === true && this.isReplica) {
        await waitForStreaming(address, `replica ${this.spec.name}`, deadline, abortReason);
      }
    });
  }
}
