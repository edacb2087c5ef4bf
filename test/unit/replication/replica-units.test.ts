import { ConfigError, ErrorCodes } from '../../../src/kernel/errors';
import { formatLsn, parseLsn } from '../../../src/cluster/wal-position';
import { isConnectionFailure, isPoolTimeout, isReadOnlyRefusal, isRecoveryConflict } from '../../../src/cluster/connection-failure';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';
import { REPLICA_READ_DEFAULTS, resolveReplicaReadOptions } from '../../../src/replication/replica-router';
import { roundRobin } from '../../../src/balancer/strategies/round-robin';

describe('WAL positions', () => {
  test('parse to 64-bit values that order as PostgreSQL orders them, and format back', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe((1n << 64n) - 1n);
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
    for (const text of ['0/0', '16/B374D848', 'FFFFFFFF/FFFFFFFF', '1/1A']) expect(formatLsn(parseLsn(text))).toBe(text);
  });

  test('refuse text that is not a position', () => {
    for (const bad of ['', '/', '1/', '/1', '12', 'G/1', '1/2/3', ' 1/2']) expect(() => parseLsn(bad)).toThrow(/Not a WAL position/);
  });
});

describe('connection failures', () => {
  test('socket errors, SQLSTATE class 08 and shutdowns count; statement errors do not', () => {
    expect(isConnectionFailure(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionFailure(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isConnectionFailure(Object.assign(new Error('connection failure'), { code: '08006' }))).toBe(true);
    expect(isConnectionFailure(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionFailure(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isConnectionFailure(Object.assign(new Error('canceling statement due to conflict with recovery'), { code: '40001' }))).toBe(false);
    expect(isConnectionFailure('ECONNREFUSED')).toBe(false);
    expect(isConnectionFailure(null)).toBe(false);
    expect(isPoolTimeout(new Error('timeout exceeded when trying to connect'))).toBe(true);
    expect(isPoolTimeout(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(false);
  });

  test('recovery conflicts on a standby are told apart from other errors', () => {
    expect(isRecoveryConflict(Object.assign(new Error('canceling statement due to conflict with recovery'), { code: '40001' }))).toBe(true);
    expect(isRecoveryConflict(Object.assign(new Error('deadlock'), { code: '40P01' }))).toBe(true);
    expect(isRecoveryConflict(Object.assign(new Error('connection failure'), { code: '08006' }))).toBe(false);
    expect(isRecoveryConflict(undefined)).toBe(false);
    expect(isReadOnlyRefusal(Object.assign(new Error('cannot execute SELECT FOR UPDATE in a read-only transaction'), { code: '25006' }))).toBe(true);
    expect(isReadOnlyRefusal(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
  });
});

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
});

describe('replica read options', () => {
  test('defaults: reads stay on the primary, 16 MiB lag bound, checks every second', () => {
    expect(resolveReplicaReadOptions()).toEqual({ ...REPLICA_READ_DEFAULTS, strategy: undefined });
    expect(REPLICA_READ_DEFAULTS).toEqual({ readFrom: 'primary', maxLagBytes: 16 * 1024 * 1024, lagCheckIntervalMillis: 1000, checkTimeoutMillis: 2000 });
  });

  test('bad options name the option', () => {
    const cases: [object, string][] = [
      [{ readFrom: 'replicas' }, 'replicas.readFrom'],
      [{ maxLagBytes: -1 }, 'replicas.maxLagBytes'],
      [{ maxLagBytes: 1.5 }, 'replicas.maxLagBytes'],
      [{ lagCheckIntervalMillis: -5 }, 'replicas.lagCheckIntervalMillis'],
      [{ checkTimeoutMillis: 0 }, 'replicas.checkTimeoutMillis'],
      [{ strategy: 'least-connections' }, 'replicas.strategy'],
    ];
    for (const [options, option] of cases) {
      let error: unknown;
      try {
        resolveReplicaReadOptions(options as never);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ code: ErrorCodes.INVALID_CONFIG });
      expect((error as Error).message).toContain(option);
    }
    expect(resolveReplicaReadOptions({ readFrom: 'replica', strategy: roundRobin() }).strategy?.name).toBe('round-robin');
  });
});
