import { createTopology, type ShardInput } from '../../../src/cluster/topology';
import { TopologyError } from '../../../src/cluster/cluster-errors';
import { databaseAddress } from '../../../src/cluster/server-address';
import { ErrorCodes } from '../../../src/kernel/errors';

// Two shards on one database would each count its rows in every scatter; a replica that names its
// primary's own database on the same server is not a replica. createTopology refuses both.
function refusal(shards: ShardInput[]): TopologyError {
  try {
    createTopology({ shards });
  } catch (error) {
    expect(error).toBeInstanceOf(TopologyError);
    return error as TopologyError;
  }
  throw new Error('expected createTopology to refuse');
}

describe('createTopology refuses one database listed twice', () => {
  test('two shards on the same host, port and database, whatever the user, password and parameters; both named, password hidden', () => {
    const error = refusal([
      { id: 'a', primary: 'postgres://app:Sekr3tA@DB1.internal:5432/app' },
      { id: 'b', primary: 'postgres://other:Sekr3tB@db1.internal/app?sslmode=require&application_name=x' },
    ]);
    expect(error.code).toBe(ErrorCodes.INVALID_TOPOLOGY);
    expect(error.message).toContain('shard "a" primary (postgres://app:***@DB1.internal:5432/app)');
    expect(error.message).toContain('shard "b" primary (postgres://other:***@db1.internal/app?sslmode=require&application_name=x)');
    expect(error.message).toContain('db1.internal:5432/app');
    expect(error.message + JSON.stringify(error.context)).not.toMatch(/Sekr3t/);
    expect(error.context).toMatchObject({ first: 'shard "a" primary', second: 'shard "b" primary' });
  });

  test('a replica that is its own primary, or another shard\'s server', () => {
    expect(refusal([{ id: 'a', primary: 'postgres://u@h1/app', replicas: ['postgres://u@h1:5432/app'] }]).message).toMatch(
      /shard "a" primary .* and shard "a" replica 0 .* are the same database/,
    );
    expect(
      refusal([
        { id: 'a', primary: 'postgres://u@h1/app', replicas: ['postgres://u@h2/app'] },
        { id: 'b', primary: 'postgres://u@h2/app' },
      ]).message,
    ).toMatch(/shard "a" replica 0 .* and shard "b" primary .* are the same database/);
  });

  test('a URL with no database names the user\'s database, as pg reads it; ?host= and ?port= win over the URL\'s', () => {
    expect(refusal([{ id: 'a', primary: 'postgres://app@h1/app' }, { id: 'b', primary: 'postgres://app@h1' }]).message).toContain('h1:5432/app');
    expect(databaseAddress('postgres://u@ignored:1/db?host=H2&port=6000')).toBe('h2:6000/db');
    expect(databaseAddress('postgres://u@[::1]:5433/d%20b')).toBe('::1:5433/d b');
  });

  test('accepts different databases on one server, and one database name on different servers or ports', () => {
    const topology = createTopology({
      shards: [
        { id: 'a', primary: 'postgres://u@h1:5432/app0', replicas: ['postgres://u@h1:5433/app0'] },
        { id: 'b', primary: 'postgres://u@h1:5432/app1' },
        { id: 'c', primary: 'postgres://u@h2:5432/app0' },
      ],
    });
    expect(topology.shards.map((s) => s.id)).toEqual(['a', 'b', 'c']);
  });

  test('withShardAdded refuses a new shard on a database the topology already has', () => {
    const topology = createTopology({ shards: [{ id: 'a', primary: 'postgres://u@h1/app' }] });
    expect(() => topology.withShardAdded({ id: 'b', primary: 'postgres://v:pw@h1:5432/app' })).toThrow(/shard "a" primary .* and shard "b" primary .* are the same database/);
  });
});
