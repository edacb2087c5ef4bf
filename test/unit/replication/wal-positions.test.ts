import { formatLsn, parseLsn } from '../../../src/cluster/wal-position';

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

