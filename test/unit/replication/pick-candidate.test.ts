import { roundRobin } from '../../../src/balancer/strategies/round-robin';
import { pickCandidate } from '../../../src/balancer/strategy-candidates';
import type { Strategy } from '../../../src/balancer/balancer-strategy';
import { createTopology } from '../../../src/cluster/topology';
import { ReplicaMember } from '../../../src/replication/replica-member';

const shard = createTopology({ shards: [{ id: 's0', primary: 'postgres://u:pw@p:5432/db', replicas: ['postgres://u:pw@r0:5432/db', 'postgres://u:pw@r1:5432/db'] }] }).shards[0]!;

describe('pickCandidate: replica choice through the balancer’s strategy', () => {
  test('pickCandidate returns the strategy’s choice as the member itself, and nothing for a strategy that answers with a stranger or throws', () => {
    const members = shard.replicas.map((server) => new ReplicaMember(shard, server, () => 0));
    const rr = roundRobin();
    const first = pickCandidate(rr, members);
    const second = pickCandidate(rr, members);
    expect(first).toBeInstanceOf(ReplicaMember);
    expect(new Set([first, second])).toEqual(new Set(members));
    const stranger: Strategy = { name: 'stranger', pick: () => ({ ...members[0]!, inflight: 0 }) };
    expect(pickCandidate(stranger, members)).toBeUndefined();
    const throwing: Strategy = { name: 'throwing', pick: () => { throw new Error('none fits'); } };
    expect(pickCandidate(throwing, members)).toBeUndefined();
    expect(pickCandidate(rr, [])).toBeUndefined();
  });

});
