import { Balancer, ManualClock, peakEwma, type Lease } from '../../../src/balancer';

const CALLERS = 32;

/**
 * Closed loop on a manual clock: 32 callers over four healthy instances answering in
 * `healthyMillis` and one that answers every call with an error in 0.1 ms, for 60 s without
 * ejection (the strategy alone). Returns the share of calls sent to the failing one.
 */
function shareToFailing(healthyMillis: number): number {
  const clock = new ManualClock(0);
  const balancer = new Balancer({
    clock,
    strategy: peakEwma({ clock }),
    slowStart: false,
    outlierEjection: false,
    instances: ['a', 'b', 'c', 'd', 'failing'].map((id) => ({ id, address: `sim://${id}` })),
  });
  let total = 0;
  let failing = 0;
  const call = (): void => {
    const lease: Lease = balancer.acquire();
    total++;
    const fails = lease.instance.id === 'failing';
    if (fails) failing++;
    clock.setTimeout(() => {
      lease.release(!fails);
      call();
    }, fails ? 0.1 : healthyMillis);
  };
  for (let i = 0; i < CALLERS; i++) call();
  clock.advance(60_000);
  return failing / total;
}

describe('an instance that fails fast', () => {
  it.each([150, 300])('gets at most 1%% of calls under peak EWMA when healthy instances answer in %i ms', (healthyMillis) => {
    expect(shareToFailing(healthyMillis)).toBeLessThanOrEqual(0.01);
  });
});
