/**
 * What `abort` and `resume` say after a killed drain of the holder of the unsharded tables: only
 * the versions this run published are credited to it (the killed run's are labelled as its), and
 * the holder's version is printed only when the holder moved.
 */
import { startUnshardedFixture, crashUnshardedDrainAt } from './unsharded-fixture';
import { abortMove, moveHistory, resumeMove } from '../../../src/admin/mover/move-control';
import { moveOutcome } from '../../../src/admin/mover/move-command-support';
import { unshardedLine } from '../../../src/admin/mover/move-result';
import { TopologyCatalog } from '../../../src/admin/topology-catalog';


async function latestVersion(catalogUrl: string): Promise<number> {
  const catalog = new TopologyCatalog({ url: catalogUrl });
  try {
    return (await catalog.latest())!.version;
  } finally {
    await catalog.close();
  }
}

test('killed with the unsharded fence up, then abort: no version credited, no holder version printed, the killed run\'s versions labelled', async () => {
  const f = await startUnshardedFixture('mover_summary_abort', 2);
  try {
    await f.seed(await f.init(2, 32), 0, 60);
    await crashUnshardedDrainAt(f.catalogUrl, 'unsharded-fenced');
    const atCrash = await latestVersion(f.catalogUrl);
    const result = await abortMove({ catalog: f.catalogUrl });
    expect(result.error).toBeNull();
    expect(await latestVersion(f.catalogUrl)).toBe(atCrash);
    expect(result.versions).toEqual([]);
    // The killed run published its slot batch (version 2) before the unsharded step.
    expect(result.earlierVersions).toEqual([atCrash]);
    expect(result.unsharded).toMatchObject({ phase: 'aborted', holderMoved: false });
    const text = moveOutcome(result).text;
    expect(text).toContain(`no version published (${atCrash} by the interrupted run)`);
    expect(text).toMatch(/Unsharded tables shard0 → shard1: aborted, \d+ rows copied\./);
    expect(text).not.toContain('holder recorded');
    const moves = await moveHistory({ catalog: f.catalogUrl });
    expect(unshardedLine(moves.moves[0]!.unsharded!)).not.toMatch(/ v\d+/);
  } finally {
    await f.close();
  }
}, 60_000);

test('killed after the switch, then resume: only the versions the resume published are credited to it', async () => {
  const f = await startUnshardedFixture('mover_summary_resume', 2);
  try {
    await f.seed(await f.init(2, 32), 0, 60);
    await crashUnshardedDrainAt(f.catalogUrl, 'unsharded-switched');
    const atCrash = await latestVersion(f.catalogUrl);
    const result = await resumeMove({ catalog: f.catalogUrl });
    expect(result.error).toBeNull();
    const final = await latestVersion(f.catalogUrl);
    // The new holder's version, then the topology without shard0.
    expect(result.versions).toEqual([atCrash + 1, atCrash + 2]);
    expect(final).toBe(atCrash + 2);
    expect(result.earlierVersions).toEqual([atCrash]);
    expect(result.unsharded).toMatchObject({ phase: 'cleaned', holderMoved: true, version: atCrash + 1 });
    const text = moveOutcome(result).text;
    expect(text).toContain(`versions ${atCrash + 1}, ${atCrash + 2} published (${atCrash} by the interrupted run)`);
    expect(text).toContain(`holder recorded in version ${atCrash + 1}`);
  } finally {
    await f.close();
  }
}, 60_000);
