import { Balancer, leastConnections, ManualClock, type BalancedInstance, type BalancerEventMap, type CallOutcome, type Strategy } from '../../../src/balancer';

/** A balancer on a manual clock over instances a, b, c with least-connections. */
export function makeBalancer(options: ConstructorParameters<typeof Balancer>[0] = {}): { clock: ManualClock; balancer: Balancer } {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: leastConnections(),
    instances: [
      { id: 'a', address: 'sim://a' },
      { id: 'b', address: 'sim://b' },
      { id: 'c', address: 'sim://c' },
    ],
    ...options,
  });
  return { clock, balancer };
}

/** Collects the payloads of one balancer event. */
export function record<K extends keyof BalancerEventMap & string>(balancer: Balancer, event: K): Array<BalancerEventMap[K]> {
  const seen: Array<BalancerEventMap[K]> = [];
  balancer.on(event, (payload) => seen.push(payload));
  return seen;
}

/** Picks the candidate whose id is the request key (else the first), and records what it learns. */
export function byKey(): Strategy & { learned: string[]; removed: string[] } {
  const learned: string[] = [];
  const removed: string[] = [];
  return {
    name: 'by-key',
    learned,
    removed,
    pick: (candidates, request) => candidates.find((c) => c.id === request.key) ?? candidates[0],
    onComplete: (i: BalancedInstance, o: CallOutcome) => learned.push(`${i.id}:${o.ok}`),
    onRemove: (id) => removed.push(id),
  };
}

/** A balancer on a manual clock over a, b, c, d whose strategy picks by `key`, without slow start. */
export function keyedBalancer(options: ConstructorParameters<typeof Balancer>[0] = {}): {
  clock: ManualClock;
  balancer: Balancer;
  strategy: ReturnType<typeof byKey>;
} {
  const clock = new ManualClock(0);
  const strategy = byKey();
  const balancer = new Balancer({
    clock,
    strategy,
    slowStart: false,
    instances: ['a', 'b', 'c', 'd'].map((id) => ({ id, address: `sim://${id}` })),
    ...options,
  });
  return { clock, balancer, strategy };
}

/** The statistics of one instance. */
export const stat = (b: Balancer, id: string) => b.stats().instances.find((i) => i.id === id);
