/** Every error class the mover throws or reports is public, where its siblings are (`kysely-scale/admin`), so callers can test for it with instanceof. */
import * as admin from '../../../src/admin';
import * as mover from '../../../src/admin/mover/mover-errors';

test('the mover error classes are exported from kysely-scale/admin', () => {
  const classes = Object.entries(mover).filter(([name, value]) => typeof value === 'function' && name.endsWith('Error'));
  expect(classes.map(([name]) => name).sort()).toEqual(['EpochSequenceBehindError', 'MoveFailedError', 'MoveRefusedError', 'MoverSupersededError', 'ShardLockError', 'ShardSilentError']);
  for (const [name, value] of classes) expect((admin as Record<string, unknown>)[name]).toBe(value);
});
