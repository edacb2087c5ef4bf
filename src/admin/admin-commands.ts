import { ConfigError } from '../kernel/errors';
import { TopologyError } from '../cluster/cluster-errors';
import { TopologyConflictError } from './admin-errors';
import { redactText } from '../kernel/redact';
import { createTopology, type Topology } from '../cluster/topology';
import { TopologyCatalog, type PublishedTopology } from './topology-catalog';
import { CatalogTimeoutError } from './catalog-connections';
import { checkShardServers } from './server-checks';
import { writeShardIdentities, type IdentityProblem } from './replica-identities';
import { nameServer, isServerFailure } from './server-client';
import type { ServerClientOptions } from './server-client-options';
import { shardMigrationStatus, type MigrationStatus } from './migration-status';
import { migrateShards, type MigrateShardsOptions, type MigrationTableOptions, type ShardMigrationResultSet } from './shard-migrations';

/** A shard as an operator lists it for `init`. */
export interface ShardArgument {
  readonly id: string;
  readonly primary: string;
  readonly replicas: readonly string[];
}

/** What `status` reports: safe to print (every URL redacted). */
export interface CatalogStatus {
  readonly catalog: string;
  readonly version: number | null;
  readonly slotCount: number | null;
  readonly shards: readonly { readonly id: string; readonly primary: string; readonly replicas: readonly string[]; readonly slots: number }[];
  readonly history: readonly PublishedTopology[];
  /** Each shard's Kysely migrations and whether they drifted; null unless asked for (or no topology). */
  readonly migrations: MigrationStatus | null;
}

/** Options of {@link initCatalog}. */
export interface InitOptions extends ServerClientOptions {
  /** Slot count of the new cluster. @default 4096 */
  slotCount?: number;
  /**
   * Check every server before publishing: it answers, each primary is not in recovery, each
   * replica streams WAL from its shard's primary ({@link ServerCheckError} otherwise).
   * @default true
   */
  checkServers?: boolean;
}

/** Options of {@link catalogStatus}. */
export interface CatalogStatusOptions extends ServerClientOptions {
  /** Versions of history to list. @default 5 */
  historyLimit?: number;
  /** Also read each shard's Kysely migration table (`true`, or where the table is). @default false */
  migrations?: boolean | MigrationTableOptions;
}

/** What `init` did. */
export interface InitResult {
  readonly catalog: string;
  readonly version: number;
  readonly shards: number;
  readonly slotCount: number;
  /**
   * Primaries of shards with replicas whose replica identity (`kysely_scale.replica_identity`)
   * could not be written; their replicas serve reads only once a role that may create it has
   * written it (a dialect does on its first check).
   */
  readonly identityProblems: readonly IdentityProblem[];
}

/**
 * Creates the catalog table and publishes version 1 of a topology over `shards`; refuses a
 * catalog that already has a topology. First it checks the servers (see {@link InitOptions.checkServers}):
 * nothing is written to the catalog unless every server is what the topology says it is.
 *
 * @throws ServerCheckError (`E_INVALID_TOPOLOGY`) listing each server that failed a check.
 * @throws TopologyConflictError when the catalog already holds a topology.
 */
export async function initCatalog(catalogUrl: string, shards: readonly ShardArgument[], options: InitOptions = {}): Promise<InitResult> {
  const { slotCount } = options;
  const topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primary, replicas: [...s.replicas] })), ...(slotCount === undefined ? {} : { slotCount }) });
  if (options.checkServers ?? true) await checkShardServers(shards, options);
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    await catalog.install().catch((error: unknown) => {
      throw catalogFailure(error, catalogUrl);
    });
    return await catalog.withOperatorLock(async () => {
      const existing = await catalog.latest();
      if (existing !== undefined) {
        throw new TopologyConflictError(`The catalog already holds topology version ${existing.version}; init only starts an empty catalog.`, {
          latest: existing.version,
          attempted: topology.version,
        });
      }
      await catalog.publish(topology, 'init');
      // As the operator role: app roles usually may not create it, and their replicas would stay unverified.
      const identityProblems = await writeShardIdentities(shards, options);
      return Object.freeze({ catalog: catalog.redactedUrl, version: topology.version, shards: topology.shards.length, slotCount: topology.slotCount, identityProblems });
    });
  } finally {
    await catalog.close();
  }
}

/** The catalog's latest topology and recent history (and, if asked, each shard's migrations), with every URL redacted. */
export async function catalogStatus(catalogUrl: string, options: CatalogStatusOptions = {}): Promise<CatalogStatus> {
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    // A catalog not installed yet has no topology rather than an error.
    const installed = await catalog.installed().catch((error: unknown) => {
      throw catalogFailure(error, catalogUrl);
    });
    const latest: Topology | undefined = installed ? await catalog.latest() : undefined;
    const history = latest === undefined ? [] : await catalog.history(options.historyLimit ?? 5);
    const tables = typeof options.migrations === 'object' ? options.migrations : {};
    const migrations =
      latest === undefined || options.migrations === undefined || options.migrations === false
        ? null
        : await shardMigrationStatus(latest.shards.map((s) => ({ id: s.id, url: s.primary.url })), { ...options, ...tables });
    return Object.freeze({
      catalog: catalog.redactedUrl,
      version: latest?.version ?? null,
      slotCount: latest?.slotCount ?? null,
      shards: (latest?.shards ?? []).map((s) =>
        Object.freeze({ id: s.id, primary: s.primary.redactedUrl, replicas: s.replicas.map((r) => r.redactedUrl), slots: latest!.slotsOf(s.id).length }),
      ),
      history,
      migrations,
    });
  } finally {
    await catalog.close();
  }
}

/**
 * {@link migrateShards} over the shards of the catalog's latest topology, holding the catalog's
 * operator lock so that no slot move or other operator change runs meanwhile. Never throws: a
 * catalog that cannot be read, has no topology, or is locked by another operator is reported as
 * the result's `error`.
 */
export async function migrateCatalogShards(catalogUrl: string, options: Omit<MigrateShardsOptions, 'shards'>): Promise<ShardMigrationResultSet> {
  let catalog: TopologyCatalog | undefined;
  try {
    catalog = new TopologyCatalog({ url: catalogUrl });
    const open = catalog;
    return await open.withOperatorLock(async () => {
      const latest = await open.latest();
      if (latest === undefined) throw new TopologyError('The catalog holds no topology yet: run init first, or give the shards (--shard) instead.');
      return migrateShards({ ...options, shards: latest });
    });
  } catch (error) {
    return Object.freeze({ error: catalogFailure(error, catalogUrl), shards: Object.freeze([]) });
  } finally {
    await catalog?.close();
  }
}

/** A failure to reach or log in to the catalog, named once (a {@link CatalogTimeoutError} names it already); others unchanged. */
function catalogFailure(error: unknown, catalogUrl: string): unknown {
  if (error instanceof CatalogTimeoutError) return error;
  return isServerFailure(error) ? nameServer(error, 'catalog', catalogUrl) : error;
}

/** Parses `id=primaryUrl[,replicaUrl…]`. */
export function parseShardArgument(text: string): ShardArgument {
  const eq = text.indexOf('=');
  const urls = eq > 0 ? text.slice(eq + 1).split(',').map((u) => u.trim()).filter((u) => u !== '') : [];
  if (eq <= 0 || urls.length === 0) {
    throw new ConfigError('--shard', `takes id=primaryUrl[,replicaUrl…]; got ${JSON.stringify(redactText(text))}`);
  }
  return { id: text.slice(0, eq), primary: urls[0]!, replicas: urls.slice(1) };
}
