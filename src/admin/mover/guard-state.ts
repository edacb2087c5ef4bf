/** Changes to a shard's guard row: hidden slots and the required topology version (each checked against the command's epoch: `mover-epoch.ts`). */
import type { Client } from 'pg';
import { queryChecked } from './mover-epoch';

function zeros(slotCount: number): string {
  return `repeat('0', ${slotCount})::varbit`;
}

/** Hides the rows of the slots in `bits` from app reads on this shard. */
export async function hideSlots(client: Client, bits: string, slotCount: number): Promise<void> {
  await queryChecked(client, `update kysely_scale.shard_guard set hidden = coalesce(hidden, ${zeros(slotCount)}) | ${bits}::varbit, updated_at = now()`);
}

/** Shows the rows of the slots in `bits` again (null when nothing stays hidden, so reads skip the per-row check). */
export async function unhideSlots(client: Client, bits: string, slotCount: number): Promise<void> {
  await queryChecked(client, `update kysely_scale.shard_guard set hidden = nullif(coalesce(hidden, ${zeros(slotCount)}) & ~${bits}::varbit, ${zeros(slotCount)}), updated_at = now()`);
}

/** The shard's required version. */
export async function requiredVersion(client: Client): Promise<number> {
  const { rows } = await client.query<{ v: number }>('select required_version as v from kysely_scale.shard_guard');
  return rows[0]?.v ?? 0;
}

/** Raises the required version to at least `version`. */
export async function requireVersion(client: Client, version: number): Promise<void> {
  await queryChecked(client, `update kysely_scale.shard_guard set required_version = greatest(required_version, ${Math.trunc(Number(version))}), updated_at = now()`);
}

/** Puts the required version back to `previous` if it is still `version` (an aborted cutover). */
export async function restoreRequiredVersion(client: Client, version: number, previous: number): Promise<void> {
  await queryChecked(client, `update kysely_scale.shard_guard set required_version = ${Math.trunc(Number(previous))}, updated_at = now() where required_version = ${Math.trunc(Number(version))}`);
}

/** Lowers the required version to `latest` where it is above it (an abort's last step: no router could satisfy a newer one). */
export async function lowerRequiredVersion(client: Client, latest: number): Promise<void> {
  const v = Math.trunc(Number(latest));
  await queryChecked(client, `update kysely_scale.shard_guard set required_version = ${v}, updated_at = now() where required_version > ${v}`);
}
