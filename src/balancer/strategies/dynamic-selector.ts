import type { BalancedInstance, NonEmptyArray } from '../balancer-instance';
import { systemClock, type Clock } from '../../kernel/clock';
import type { CallOutcome, PickRequest, Strategy } from '../balancer-strategy';
import { describeValue, requireFunction, requireNonNegative } from '../../kernel/validate';
import { ConfigError } from '../../kernel/errors';
import { costAware } from './cost-aware';
import { loadAdjustedLatency } from './load-adjusted-latency';
import { peakEwma } from './peak-ewma';
import { resourceAware } from './resource-aware';
import { requireOptions, requireStrategy } from '../balancer-option-checks';

/** Figures a dynamic selector's rules look at, computed from the current candidates. */
export interface SelectorMetrics {
  /** Mean reported CPU usage (0 to 1) of candidates that report it; `undefined` when none does. */
  readonly averageCpuUsageRatio: number | undefined;
  /** Mean latency EWMA of candidates that completed a call, in ms; `undefined` before any. */
  readonly averageLatencyMillis: number | undefined;
  /** Share of the budget spent (0 to 1) as reported by `budgetUtilizationRatio`; `undefined` without one. */
  readonly budgetUtilizationRatio: number | undefined;
  /** Calls in flight over all candidates. */
  readonly totalInflight: number;
  /** Number of candidates. */
  readonly candidateCount: number;
}

/** When `when` holds, `strategy` is used. Rules are tried in order; the first that holds wins. */
export interface DynamicRule {
  readonly name: string;
  readonly when: (metrics: SelectorMetrics) => boolean;
  readonly strategy: Strategy;
}

/** Options of {@link dynamicSelector}. */
export interface DynamicSelectorOptions {
  /**
   * Rules in priority order.
   * @default defaultDynamicRules()
   */
  readonly rules?: readonly DynamicRule[];
  /**
   * Strategy used when no rule holds (the original design's "smart adaptive" slot).
   * @default peakEwma()
   */
  readonly fallback?: Strategy;
  /** Reports the share of the budget spent, 0 to 1 (for the cost rule). */
  readonly budgetUtilizationRatio?: () => number;
  /**
   * Rules are re-evaluated at most this often, in ms, so the choice does not flap per call.
   * @default 1000
   */
  readonly evaluationIntervalMillis?: number;
  /**
   * Source of time.
   * @default systemClock
   */
  readonly clock?: Clock;
  /** Called when the active strategy changes. */
  readonly onSwitch?: (from: string, to: string, metrics: SelectorMetrics) => void;
}

/** Defaults of {@link DynamicSelectorOptions}. */
export const DYNAMIC_SELECTOR_DEFAULTS = Object.freeze({ evaluationIntervalMillis: 1000 });

/**
 * The original design's rules: CPU above 80% → resource-aware; mean latency above 200 ms →
 * load-adjusted latency; budget above 80% spent → cost-aware.
 */
export function defaultDynamicRules(): readonly DynamicRule[] {
  return Object.freeze([
    { name: 'high-cpu', when: (m: SelectorMetrics) => (m.averageCpuUsageRatio ?? 0) > 0.8, strategy: resourceAware() },
    { name: 'high-latency', when: (m: SelectorMetrics) => (m.averageLatencyMillis ?? 0) > 200, strategy: loadAdjustedLatency() },
    { name: 'budget', when: (m: SelectorMetrics) => (m.budgetUtilizationRatio ?? 0) > 0.8, strategy: costAware() },
  ]);
}

function mean(values: readonly number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0) / values.length;
}

/** @internal Computes {@link SelectorMetrics} for a candidate list. */
export function selectorMetrics(
  candidates: readonly BalancedInstance[],
  budgetUtilizationRatio: number | undefined,
): SelectorMetrics {
  return {
    averageCpuUsageRatio: mean(candidates.flatMap((c) => (c.metadata.cpuUsageRatio === undefined ? [] : [c.metadata.cpuUsageRatio]))),
    averageLatencyMillis: mean(candidates.flatMap((c) => (c.latencyEwmaMillis === undefined ? [] : [c.latencyEwmaMillis]))),
    budgetUtilizationRatio,
    totalInflight: candidates.reduce((sum, c) => sum + c.inflight, 0),
    candidateCount: candidates.length,
  };
}

const DYNAMIC_SELECTOR_OPTIONS_KEYS: Readonly<Record<keyof DynamicSelectorOptions, true>> = {
  rules: true,
  fallback: true,
  budgetUtilizationRatio: true,
  evaluationIntervalMillis: true,
  clock: true,
  onSwitch: true,
};

/**
 * Switches strategy from current metrics (the original design's dynamic balancer). Every strategy
 * keeps learning from every outcome, so the one switched to is warm.
 */
export function dynamicSelector(options: DynamicSelectorOptions = {}): Strategy & { readonly active: Strategy } {
  requireOptions('', options, DYNAMIC_SELECTOR_OPTIONS_KEYS);
  const rules = options.rules ?? defaultDynamicRules();
  if (!Array.isArray(rules)) throw new ConfigError('rules', `must be an array of { name, when, strategy }, got ${describeValue(rules)}`);
  rules.forEach((rule: DynamicRule, i) => {
    requireFunction(`rules[${i}].when`, rule?.when, '(metrics) => boolean');
    requireStrategy(`rules[${i}].strategy`, rule.strategy);
  });
  const fallback = options.fallback === undefined ? peakEwma({ clock: options.clock ?? systemClock }) : requireStrategy('fallback', options.fallback);
  const interval = requireNonNegative(
    'evaluationIntervalMillis',
    options.evaluationIntervalMillis ?? DYNAMIC_SELECTOR_DEFAULTS.evaluationIntervalMillis,
  );
  const clock = options.clock ?? systemClock;
  const all = [...new Set([fallback, ...rules.map((r) => r.strategy)])];
  let active: Strategy = fallback;
  let evaluatedAt = -Infinity;

  const evaluate = (candidates: readonly BalancedInstance[]): void => {
    const now = clock.monotonicNow();
    if (now - evaluatedAt < interval) return;
    evaluatedAt = now;
    const metrics = selectorMetrics(candidates, options.budgetUtilizationRatio?.());
    const next = rules.find((r) => r.when(metrics))?.strategy ?? fallback;
    if (next !== active) {
      const from = active.name;
      active = next;
      options.onSwitch?.(from, next.name, metrics);
    }
  };

  return {
    get name(): string {
      return `dynamic:${active.name}`;
    },
    get active(): Strategy {
      return active;
    },
    pick(candidates: NonEmptyArray<BalancedInstance>, request: PickRequest): BalancedInstance {
      evaluate(candidates);
      return active.pick(candidates, request);
    },
    onComplete(instance: BalancedInstance, outcome: CallOutcome): void {
      for (const s of all) s.onComplete?.(instance, outcome);
    },
    onRemove(instanceId: string): void {
      for (const s of all) s.onRemove?.(instanceId);
    },
    onReturn(instanceId: string): void {
      for (const s of all) s.onReturn?.(instanceId);
    },
  };
}
