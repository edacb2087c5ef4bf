import { ConfigError } from '../kernel/errors';
import { TopologyConflictError } from './admin-errors';
import { redactText } from '../kernel/redact';
import { createTopology, type Topology } from '../cluster/topology';
import { TopologyCatalog, type PublishedTopology } from './topology-catalog';

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
}

/** What `init` did. */
export interface InitResult {
  readonly catalog: string;
  readonly version: number;
  readonly shards: number;
  readonly slotCount: number;
}

/** Creates the catalog table and publishes version 1 of a topology over `shards`; refuses a catalog that already has a topology. */
export async function initCatalog(catalogUrl: string, shards: readonly ShardArgument[], slotCount?: number): Promise<InitResult> {
  const topology = createTopology({ shards: shards.map((s) => ({ id: s.id, primary: s.primary, replicas: [...s.replicas] })), ...(slotCount === undefined ? {} : { slotCount }) });
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    await catalog.install();
    return await catalog.withOperatorLock(async () => {
      const existing = await catalog.latest();
      if (existing !== undefined) {
        throw new TopologyConflictError(`The catalog already holds topology version ${existing.version}; init only starts an empty catalog.`, {
          latest: existing.version,
          attempted: topology.version,
        });
      }
      await catalog.publish(topology, 'init');
      return Object.freeze({ catalog: catalog.redactedUrl, version: topology.version, shards: topology.shards.length, slotCount: topology.slotCount });
    });
  } finally {
    await catalog.close();
  }
}

/** The catalog's latest topology and recent history, with every URL redacted. */
export async function catalogStatus(catalogUrl: string, historyLimit = 5): Promise<CatalogStatus> {
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    // A catalog not installed yet has no topology rather than an error.
    const latest: Topology | undefined = (await catalog.installed()) ? await catalog.latest() : undefined;
    const history = latest === undefined ? [] : await catalog.history(historyLimit);
    return Object.freeze({
      catalog: catalog.redactedUrl,
      version: latest?.version ?? null,
      slotCount: latest?.slotCount ?? null,
      shards: (latest?.shards ?? []).map((s) =>
        Object.freeze({ id: s.id, primary: s.primary.redactedUrl, replicas: s.replicas.map((r) => r.redactedUrl), slots: latest!.slotsOf(s.id).length }),
      ),
      history,
    });
  } finally {
    await catalog.close();
  }
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
