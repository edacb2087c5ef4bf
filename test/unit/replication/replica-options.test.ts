import { ConfigError, ErrorCodes } from '../../../src/kernel/errors';
import { REPLICA_READ_DEFAULTS, resolveReplicaReadOptions } from '../../../src/replication/replica-options';
import { roundRobin } from '../../../src/balancer/strategies/round-robin';

describe('replica read options', () => {
  test('defaults: reads stay on the primary, 16 MiB and 30 s lag bounds, checks every second, a 2 s read deadline', () => {
    expect(resolveReplicaReadOptions()).toEqual({ ...REPLICA_READ_DEFAULTS, strategy: undefined });
    expect(REPLICA_READ_DEFAULTS).toEqual({
      readFrom: 'primary',
      maxLagBytes: 16 * 1024 * 1024,
      maxLagMillis: 30_000,
      lagCheckIntervalMillis: 1000,
      checkTimeoutMillis: 2000,
      readTimeoutMillis: 2000,
      maxUnansweredReads: 4,
      replayWaitMillis: 100,
    });
    expect(Object.isFrozen(resolveReplicaReadOptions())).toBe(true);
  });

  test('bad options name the option', () => {
    const cases: [object, string][] = [
      [{ readFrom: 'replicas' }, 'replicas.readFrom'],
      [{ maxLagBytes: -1 }, 'replicas.maxLagBytes'],
      [{ maxLagBytes: 1.5 }, 'replicas.maxLagBytes'],
      [{ lagCheckIntervalMillis: -5 }, 'replicas.lagCheckIntervalMillis'],
      [{ checkTimeoutMillis: 0 }, 'replicas.checkTimeoutMillis'],
      [{ strategy: 'least-connections' }, 'replicas.strategy'],
      [{ strategy: {} }, 'replicas.strategy'],
      [{ maxLagMillis: 0 }, 'replicas.maxLagMillis'],
      [{ readTimeoutMillis: 0 }, 'replicas.readTimeoutMillis'],
      [{ readTimeoutMillis: 1.5 }, 'replicas.readTimeoutMillis'],
      [{ maxUnansweredReads: 0 }, 'replicas.maxUnansweredReads'],
      [{ replayWaitMillis: -1 }, 'replicas.replayWaitMillis'],
      [{ readTimeoutMs: 100 }, 'replicas.readTimeoutMs'],
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
    // A misspelt option names the one meant.
    expect(() => resolveReplicaReadOptions({ readTimeoutMs: 100 } as never)).toThrow(/did you mean `readTimeoutMillis`/);
  });
});
