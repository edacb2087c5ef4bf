import type { BalancedInstance, InstanceMetadata, NonEmptyArray } from '../../../src/balancer';

/** A mutable stand-in for the balancer's instance view, for driving strategies directly. */
export interface FakeInstance extends BalancedInstance {
  inflight: number;
  effectiveWeight: number;
  latencyEwmaMillis: number | undefined;
  metadata: InstanceMetadata;
  oldestInflightAgeMillis?: number;
}

export function fake(id: string, fields: Partial<Omit<FakeInstance, 'id'>> = {}): FakeInstance {
  const weight = fields.weight ?? 1;
  return {
    address: `sim://${id}`,
    inflight: 0,
    latencyEwmaMillis: undefined,
    metadata: {},
    ...fields,
    id,
    weight,
    effectiveWeight: fields.effectiveWeight ?? weight,
  };
}

export function list(...instances: FakeInstance[]): NonEmptyArray<FakeInstance> {
  return instances as unknown as NonEmptyArray<FakeInstance>;
}

/** A random source that replays the given values in order (and fails loudly when exhausted). */
export function replay(...values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error('replay exhausted');
    return values[i++] as number;
  };
}
