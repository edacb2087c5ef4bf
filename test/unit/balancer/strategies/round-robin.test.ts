import { roundRobin } from '../../../../src/balancer';
import { fake, list } from '../fake-instance';
import { ids } from './strategy-helpers';

describe('roundRobin', () => {
  it('serves candidates in turn', () => {
    expect(ids(roundRobin(), list(fake('a'), fake('b'), fake('c')), 7)).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });
});
