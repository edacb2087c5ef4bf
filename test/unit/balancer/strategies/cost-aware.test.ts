import { BudgetExceededError, costAware } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';

describe('costAware', () => {
  const cheap = fake('cheap', { latencyEwmaMillis: 1000, metadata: { costPerHour: 1 } });
  const fast = fake('fast', { latencyEwmaMillis: 100, metadata: { costPerHour: 5 } });

  it('picks the most performance per unit of money', () => {
    // cost × duration: cheap 1 × 1000² vs fast 5 × 100² → fast
    expect(costAware().pick(list(cheap, fast), {}).id).toBe('fast');
  });

  it('skips instances over the budget and throws BudgetExceededError when none fits', () => {
    // cheap: 1 × 1000 ms / 3.6e6 ms = 0.000278; fast: 5 × 100 / 3.6e6 = 0.000139
    expect(costAware({ maxCostPerRequest: 0.0002 }).pick(list(cheap, fast), {}).id).toBe('fast');
    expect(costAware().pick(list(cheap, fast), { maxCostPerRequest: 0.0003 }).id).toBe('fast');
    const s = costAware({ maxCostPerRequest: 0.0001 });
    expect(() => s.pick(list(cheap, fast), {})).toThrow(BudgetExceededError);
    try {
      s.pick(list(cheap, fast), {});
    } catch (error) {
      expect((error as BudgetExceededError).code).toBe('E_BUDGET_EXCEEDED');
    }
  });

  it('refuses an invalid budget, naming it', () => {
    expect(() => costAware({ maxCostPerRequest: Number.NaN })).toThrow(/maxCostPerRequest/);
  });
});
