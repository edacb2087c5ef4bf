import type { Strategy } from '../../../../src/balancer';
import type { list } from '../fake-instance';

/** The ids a strategy picks in `n` calls over the same candidates. */
export const ids = (strategy: Strategy, candidates: ReturnType<typeof list>, n: number): string[] =>
  Array.from({ length: n }, () => strategy.pick(candidates, {}).id);
