/** The set-up the dialect fence tests share: a mover fixture, a catalog on it, and what the tests opened, closed at the end. */
import { TopologyCatalog } from '../../../src/admin/topology-catalog';
import { startMoverFixture, type MoverFixture } from './mover-fixture';

/**
 * Registers `beforeAll` (a mover fixture of `shards` shards named `name`, and a catalog on it,
 * handed to `ready`) and `afterAll` (everything handed to the returned function, then the catalog
 * and the fixture, closed).
 */
export function fenceTestHooks(name: string, shards: number, ready: (fixture: MoverFixture, catalog: TopologyCatalog) => void): (close: () => Promise<unknown>) => void {
  let fixture: MoverFixture | undefined;
  let catalog: TopologyCatalog | undefined;
  const closers: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    fixture = await startMoverFixture(name, shards);
    catalog = new TopologyCatalog({ url: fixture.catalogUrl });
    ready(fixture, catalog);
  }, 60_000);
  afterAll(async () => {
    for (const close of closers) await close().catch(() => undefined);
    await catalog?.close();
    await fixture?.close();
  });
  return (close) => void closers.push(close);
}
