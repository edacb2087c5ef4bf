/** Events a balancer emits. */

/** Event name → payload. */
export interface BalancerEventMap {
  'instance-added': { readonly instanceId: string };
  'instance-removed': { readonly instanceId: string };
  /** Active health changed (health checker or `setHealth`). */
  'health-changed': { readonly instanceId: string; readonly healthy: boolean; readonly reason?: string };
  /** Passive ejection after consecutive failures. */
  ejected: { readonly instanceId: string; readonly untilMillis: number; readonly ejectionCount: number };
  /** An ejection ended. */
  returned: { readonly instanceId: string };
  /** Panic mode began or ended: too few usable instances, so all are used. */
  panic: { readonly active: boolean; readonly usable: number; readonly total: number };
}
