import { parseLsn } from '../../../src/cluster/wal-position';
import { ReadYourWritesContext } from '../../../src/replication/read-your-writes';

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

