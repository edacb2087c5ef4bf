import { pollUntil, type Deadline } from './cluster-wait';
import { withRedis } from './redis-probe';

const SLOT_COUNT = 16384;

/** A Redis Cluster node as clients (and the other nodes) reach it. */
export interface RedisNodeAddress {
  readonly host: string;
  readonly port: number;
}

async function addSlots(redis: import('ioredis').Redis, first: number, last: number): Promise<void> {
  try {
    await redis.call('CLUSTER', 'ADDSLOTSRANGE', first, last);
  } catch (error) {
    // ADDSLOTSRANGE is Redis 7+; older servers take the slots one by one.
    if (!/unknown subcommand|wrong number/i.test((error as Error).message)) throw error;
    const slots: number[] = [];
    for (let slot = first; slot <= last; slot += 1) slots.push(slot);
    await redis.call('CLUSTER', 'ADDSLOTS', ...slots);
  }
}

/**
 * Turns fresh cluster-enabled nodes into one Redis Cluster of masters: gives node i an equal
 * contiguous share of the 16384 slots and a distinct config epoch, introduces every node to the
 * first with CLUSTER MEET, then waits until every node reports `cluster_state:ok` and knows all
 * the others. `meetHost` is the address the nodes use to reach each other (they may differ from
 * what this process uses, e.g. inside one container).
 */
export async function formRedisCluster(nodes: readonly RedisNodeAddress[], deadline: Deadline, meetHost = '127.0.0.1'): Promise<void> {
  const first = nodes[0];
  if (first === undefined) return;
  await Promise.all(
    nodes.map((node, i) =>
      withRedis(node, async (redis) => {
        const from = Math.floor((i * SLOT_COUNT) / nodes.length);
        const to = Math.floor(((i + 1) * SLOT_COUNT) / nodes.length) - 1;
        // Distinct epochs up front avoid the slower automatic collision resolution.
        await redis.call('CLUSTER', 'SET-CONFIG-EPOCH', i + 1);
        await addSlots(redis, from, to);
        if (i > 0) await redis.call('CLUSTER', 'MEET', meetHost, first.port);
      }),
    ),
  );
  for (const node of nodes) {
    await pollUntil(
      () =>
        withRedis(node, async (redis) => {
          const info = String(await redis.call('CLUSTER', 'INFO'));
          const known = /cluster_known_nodes:(\d+)/.exec(info)?.[1];
          return (info.includes('cluster_state:ok') && Number(known) === nodes.length) || undefined;
        }),
      { deadline, what: `Redis Cluster node ${node.host}:${node.port} to report cluster_state:ok`, intervalMillis: 50 },
    );
  }
}
