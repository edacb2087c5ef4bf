/**
 * A standby of any running server of the test cluster (local backend only): a fresh
 * `pg_basebackup` of it, started as a hot standby that streams from it. Tests use it to build a
 * standby of a promoted copy of a shard (its upstream is not the shard's primary). Stop it with
 * `stop()`; its folder is inside the cluster's and goes with `cluster.stop()`.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestCluster } from '../../../src/testing';
import { deadlineIn } from '../../../src/testing/cluster-wait';
import { findLocalBinaries } from '../../../src/testing/local-binaries';
import { LocalPgServer } from '../../../src/testing/pg-local-server';
import { allocatePorts } from '../../../src/testing/port-allocator';
import { giveTo, resolvePgOwner, runAs, writeOwnedFile } from '../../../src/testing/process-owner';

/** Starts a standby of the server on `upstreamPort` named `name`, streaming, within 60 s. */
export async function startStandbyOf(cluster: TestCluster, upstreamPort: number, name: string): Promise<LocalPgServer> {
  if (cluster.backend !== 'local' || cluster.tempDir === undefined) throw new Error('startStandbyOf needs the local backend');
  const { pg } = await findLocalBinaries({ postgres: true, redis: false }, '');
  const owner = await resolvePgOwner();
  const dir = join(cluster.tempDir, name);
  await mkdir(dir, { mode: 0o700 });
  await giveTo(owner, dir);
  const data = join(dir, 'data');
  await runAs(owner, join(pg!.binDir, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(upstreamPort), '-U', 'postgres', '-D', data, '-X', 'stream', '-c', 'fast'], 60_000);
  await writeOwnedFile(owner, join(data, 'standby.signal'), '');
  const [port] = await allocatePorts(1);
  const server = new LocalPgServer({ name, dir, port: port!, primaryPort: upstreamPort, bin: pg!, owner, pidFile: join(dir, 'pid'), startTimeoutMillis: 30_000 });
  await server.startWithin(deadlineIn(60_000), { streaming: true });
  return server;
}
