/** Changing a running proxy's upstreams to a new list (config reload, admin endpoint). */
import type { Balancer } from '../balancer';
import type { InstanceSpec } from '../balancer-instance';
import { checkUpstreams } from './proxy-config-check';

/** What a change of upstreams did, by id. */
export interface UpstreamChanges {
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

const sameSpec = (a: InstanceSpec, b: { address: string; weight: number }): boolean => a.address === b.address && (a.weight ?? 1) === b.weight;

/**
 * @internal
 * Makes the balancer's instances the given upstreams: ids no longer listed are removed (their
 * calls in flight finish), new ids are added (they slow-start), and an id whose address or weight
 * changed is replaced. New ones are added before old ones go, so the proxy is never left empty.
 */
export function applyUpstreams(balancer: Balancer, upstreams: unknown): UpstreamChanges {
  const wanted = checkUpstreams(upstreams);
  const current = new Map(balancer.instances().map((i) => [i.id, i]));
  const added: string[] = [];
  const removed: string[] = [];
  const replaced = wanted.filter((spec) => {
    const now = current.get(spec.id);
    return now !== undefined && !sameSpec(spec, now);
  });
  for (const spec of replaced) {
    balancer.removeInstance(spec.id);
    removed.push(spec.id);
  }
  for (const spec of wanted) {
    if (current.has(spec.id) && !replaced.includes(spec)) continue;
    balancer.addInstance(spec);
    added.push(spec.id);
  }
  const keep = new Set(wanted.map((s) => s.id));
  for (const id of current.keys()) {
    if (keep.has(id)) continue;
    balancer.removeInstance(id);
    removed.push(id);
  }
  return { added, removed };
}
