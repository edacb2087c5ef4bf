import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { isNonEmpty } from '../balancer-instance';
import { NoInstanceAvailableError } from '../balancer-errors';
import type { PickRequest, Strategy } from '../balancer-strategy';
import { requireRatio } from '../../kernel/validate';
import { meetsRequirements, parseRequirements, type Requirement, type Requirements } from '../resource-requirements';
import { lowestScore } from './strategy-scan';
import { requireOptions } from '../balancer-option-checks';

/** Options of {@link resourceAware}. */
export interface ResourceAwareOptions {
  /** Requirements every call has, e.g. `{ gpu_memory: '>=16GB', cpu_cores: '>=8' }`; a call may add more. */
  readonly requirements?: Requirements;
  /**
   * Free-resource score given for an unreported usage (and for GPU on instances without one),
   * 0 to 1; the original design scores a missing GPU as 0.5.
   * @default 0.5
   */
  readonly unreportedScore?: number;
}

/** Defaults of {@link ResourceAwareOptions}. */
export const RESOURCE_AWARE_DEFAULTS = Object.freeze({ unreportedScore: 0.5 });

/** @internal Mean free share of CPU, memory and GPU from reported usage, 0 (saturated) to 1 (idle). */
export function freeResourceScore(instance: BalancedInstance, unreportedScore: number): number {
  const m = instance.metadata;
  const free = (usage: number | undefined): number =>
    usage === undefined ? unreportedScore : Math.min(1, Math.max(0, 1 - usage));
  return (free(m.cpuUsageRatio) + free(m.memoryUsageRatio) + free(m.gpuUsageRatio)) / 3;
}

const RESOURCE_AWARE_OPTIONS_KEYS: Readonly<Record<keyof ResourceAwareOptions, true>> = { requirements: true, unreportedScore: true };

/**
 * Resource-aware picking: keeps the candidates whose capabilities meet the requirements (throws
 * `NoInstanceAvailableError` when none does), skips those at `capacity` unless all are, then takes
 * the highest `freeResourceScore × effectiveWeight / (inflight + 1)`, ties in turn. Dividing by
 * in-flight calls stops every call herding onto the instance that reported best last.
 *
 * Use it when instances differ in hardware and report their usage (`balancer.reportUsage`).
 */
export function resourceAware(options: ResourceAwareOptions = {}): Strategy {
  requireOptions('', options, RESOURCE_AWARE_OPTIONS_KEYS);
  const base: readonly Requirement[] =
    options.requirements === undefined ? [] : parseRequirements(options.requirements, 'requirements');
  const unreportedScore = requireRatio('unreportedScore', options.unreportedScore ?? RESOURCE_AWARE_DEFAULTS.unreportedScore);
  let start = 0;
  return {
    name: 'resource-aware',
    pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance {
      const all =
        request.requirements === undefined ? base : [...base, ...parseRequirements(request.requirements, 'request.requirements')];
      const fit = candidates.filter((c) => meetsRequirements(c.metadata.capabilities, all));
      if (!isNonEmpty(fit)) {
        throw new NoInstanceAvailableError(
          `No instance meets the requirements ${all.map((r) => `${r.name} ${r.operator} ${String(r.value)}`).join(', ')}`,
          { requirements: all },
        );
      }
      const free = fit.filter((c) => c.metadata.capacity === undefined || c.inflight < c.metadata.capacity);
      const pool = isNonEmpty(free) ? free : fit;
      const chosen = lowestScore(
        pool,
        start,
        (c) => -(freeResourceScore(c, unreportedScore) * c.effectiveWeight) / (c.inflight + 1),
      );
      start = (start + 1) % 0x7fffffff;
      return chosen;
    },
  };
}
