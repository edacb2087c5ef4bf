import { parseLsn } from '../../../src/cluster/wal-position';
import { ReadYourWritesContext, UNKNOWN_POSITION } from '../../../src/replication/read-your-writes';
import { ReplicaReadRoute, type ReplicaRouteSource } from '../../../src/sharding/dialect/replica-read-route';
import { createTopology } from '../../../src/cluster/topology';
import { ManualClock } from '../../../src/kernel/clock';
import { ErrorCodes } from '../../../src/kernel/errors';

describe('read-your-writes context', () => {
  test('keeps the furthest write per shard and round-trips through JSON', () => {
    const context = new ReadYourWritesContext();
    expect(context.requiredPosition('s0')).toBeUndefined();
    context.noteWrite('s0', parseLsn('0/200'));
    context.noteWrite('s0', parseLsn('0/100')); // an older position never lowers the requirement
    context.noteWrite('s1', parseLsn('2/0'));
    expect(context.requiredPosition('s0')).toBe(0x200n);
    const copy = new ReadYourWritesContext(JSON.parse(JSON.stringify(context)) as Record<string, string>);
    expect(copy.toJSON()).toEqual({ s0: '0/200', s1: '2/0' });
    expect(() => new ReadYourWritesContext({ s0: 'not a position' })).toThrow(/Not a WAL position/);
  });

  test('an unknown position (not readable after a write) holds until a later position from the primary replaces it, saved or not', () => {
    const context = new ReadYourWritesContext();
    context.noteWrite('s0', parseLsn('0/200'));
    context.noteWrite('s0', UNKNOWN_POSITION);
    expect(context.requiredPosition('s0')).toBe(UNKNOWN_POSITION);
    const saved = new ReadYourWritesContext(JSON.parse(JSON.stringify(context)) as Record<string, string>);
    for (const c of [context, saved]) {
      c.noteWrite('s0', parseLsn('0/300')); // read from the primary after the unknown write: it covers it
      expect(c.requiredPosition('s0')).toBe(0x300n);
      c.noteWrite('s0', parseLsn('0/250'));
      expect(c.requiredPosition('s0')).toBe(0x300n);
    }
  });
});

describe('an unknown position and concurrent reads and writes', () => {
  test('a read never lowers an unknown position: only a primary position looked up after it replaces it', () => {
    const context = new ReadYourWritesContext();
    context.noteWrite('s0', parseLsn('0/200'));
    const before = context.beginLook(); // a concurrent read's look at the primary began before the unknown write
    context.noteWrite('s0', UNKNOWN_POSITION);
    context.noteRead('s0', parseLsn('0/250')); // a replica's replay position (no look at the primary)
    expect(context.requiredPosition('s0')).toBe(UNKNOWN_POSITION);
    context.noteRead('s0', parseLsn('0/260'), before);
    expect(context.requiredPosition('s0')).toBe(UNKNOWN_POSITION);
    context.noteWrite('s0', parseLsn('0/270'), before); // a concurrent write's position, looked up before
    expect(context.requiredPosition('s0')).toBe(UNKNOWN_POSITION);
    const after = context.beginLook();
    context.noteRead('s0', parseLsn('0/300'), after);
    expect(context.requiredPosition('s0')).toBe(0x300n);
  });

  test('a write position looked up after the unknown one replaces it', () => {
    const context = new ReadYourWritesContext();
    context.noteWrite('s0', UNKNOWN_POSITION);
    context.noteWrite('s0', parseLsn('0/300'), context.beginLook());
    expect(context.requiredPosition('s0')).toBe(0x300n);
  });
});

describe('a read route with an unknown position', () => {
  const shard = createTopology({ shards: [{ id: 's0', primary: 'postgres://u@p/db', replicas: ['postgres://u@r/db'] }] }).shards[0]!;
  const source = (primaryUp: boolean): ReplicaRouteSource & { waits: number } => ({
    waits: 0,
    options: { readTimeoutMillis: 1000, replayWaitMillis: 500 },
    serverForRead: () => undefined,
    waitForReplay(): Promise<undefined> {
      this.waits++;
      return new Promise(() => undefined); // a wait that would never end: the route must not start one
    },
    primaryAvailable: () => primaryUp,
  });

  test('goes to the primary at once, without waiting for a replica that cannot confirm it', async () => {
    const replicas = source(true);
    const route = new ReplicaReadRoute(replicas, shard, UNKNOWN_POSITION, shard.primary, new ManualClock());
    expect(await route.next()).toBeUndefined();
    expect(replicas.waits).toBe(0);
  });

  test('fails at once with a coded retryable error while the primary is unavailable', async () => {
    const route = new ReplicaReadRoute(source(false), shard, UNKNOWN_POSITION, shard.primary, new ManualClock());
    await expect(route.next()).rejects.toMatchObject({ code: ErrorCodes.READ_YOUR_WRITES_UNAVAILABLE, retryable: true });
  });
});

