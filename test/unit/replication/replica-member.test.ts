import type { BalancedInstance } from '../../../src/balancer/balancer-instance';
import { createTopology } from '../../../src/cluster/topology';
import { ReplicaMember } from '../../../src/replication/replica-member';

const shard = createTopology({ shards: [{ id: 's0', primary: 'postgres://u:pw@p:5432/db', replicas: ['postgres://u:pw@r0:5432/db', 'postgres://u:pw@r1:5432/db'] }] }).shards[0]!;

describe('replica member', () => {
  test('a replica member is a real BalancedInstance: redacted id, its pool’s busy connections in flight', () => {
    let busy = 3;
    const member = new ReplicaMember(shard, shard.replicas[0]!, () => busy);
    const instance: BalancedInstance = member;
    expect(instance).toMatchObject({ id: 'postgres://u:***@r0:5432/db', address: 'postgres://u:***@r0:5432/db', weight: 1, effectiveWeight: 1, inflight: 3 });
    busy = 0;
    expect(instance.inflight).toBe(0);
  });

  test('reads that started after a replica’s last answer pile up as unanswered; an answer clears them', () => {
    const member = new ReplicaMember(shard, shard.replicas[0]!, () => 0);
    const a = member.startRead(0);
    member.endRead(a, 2, true);
    const stuck = [member.startRead(10), member.startRead(11), member.startRead(12)];
    expect(member.unansweredReads(500)).toBe(3);
    expect(member.oldestInflightAgeMillis).toBe(490);
    // A read that failed to connect is not an answer.
    member.endRead(stuck[0]!, 600, false);
    expect(member.unansweredReads(600)).toBe(2);
    const late = member.startRead(700);
    member.endRead(late, 705, true);
    expect(member.unansweredReads(705)).toBe(0);
    expect(member.latencyEwmaMillis).toBeCloseTo(2 + 0.2 * (5 - 2));
  });
});
