import { formatSlotRanges, parseSlotRanges } from '../../../src/admin/mover/slot-ranges';
import { MoveRefusedError } from '../../../src/admin/mover/mover-errors';

describe('slot ranges', () => {
  test('parses ranges and single slots, sorted and without repeats', () => {
    expect(parseSlotRanges('5, 0-2,2-3 ,4095', 4096)).toEqual([0, 1, 2, 3, 5, 4095]);
  });

  test.each([['4096'], ['3-1'], ['a-b'], [''], ['1,,2']])('refuses %j with E_MOVE_REFUSED (slot-range)', (text) => {
    const attempt = (): number[] => parseSlotRanges(text, 4096);
    expect(attempt).toThrow(MoveRefusedError);
    try {
      attempt();
    } catch (error) {
      expect((error as MoveRefusedError).context.reason).toBe('slot-range');
    }
  });

  test('formats slots back into ranges', () => {
    expect(formatSlotRanges([7, 0, 1, 2, 9, 10])).toBe('0-2,7,9-10');
    expect(formatSlotRanges([])).toBe('');
  });
});
