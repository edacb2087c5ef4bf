import { isConnectionFailure, isPoolTimeout, isReadOnlyRefusal, isRecoveryConflict } from '../../../src/cluster/connection-failure';

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

