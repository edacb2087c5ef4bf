/** Changes to a shard's guard row: hidden slots and the required topology version. */
import type { Client } from 'pg';

function zeros(slotCount: number): string {
  return `repeat('0', ${slotCount})::varbit`;
}

/** Hides the rows of the slots in `bits` from app reads on this shard. */
export async function hideSlots(client: Client, bits: string, slotCount: number): Promise<void> {
  await client.query(`update kysely_scale.shard_guard set hidden = coalesce(hidden, ${zeros(slotCount)}) | ${bits}::varbit, updated_at = now()`);
}

/** Shows the rows of the slots in `bits` again (null when nothing stays hidden, so reads skip the per-row check). */
export async function unhideSlots(client: Client, bits: string, slotCount: number): Promise<void> {
  await client.query(`update kysely_scale.shard_guard set hidden = nullif(coalesce(hidden, ${zeros(slotCount)}) & ~${bits}::varbit, ${zeros(slotCount)}), updated_at = now()`);
}

/** The shard's required version. */
export async function requiredVersion(client: Client): Promise<number> {
  const { rows } = await client.query<{ v: number }>('select required_version as v from kysely_scale.shard_guard');
  return rows[0]?.v ?? 0;
}

/** Raises the required version to at least `version`. */
export async function requireVersion(client: Client, version: number): Promise<void> {
  await client.query('update kysely_scale.shard_guard set required_version = greatest(required_version, $1), updated_at = now()', [version]);
}

/** Puts the required version back to `previous` if it is still `version` (an aborted cutover). */
export async function restoreRequiredVersion(client: Client, version: number, previous: number): Promise<void> {
  await client.query('update kysely_scale.shard_guard set required_version = $2, updated_at = now() where required_version = $1', [version, previous]);
}

/**
 * Shows the slots in `bits` to sessions routing by `version` or newer only (a target at its
 * cutover): older sessions keep not seeing them. Slots still pending for an older version are
 * folded first (this shard then requires that version), so each shard has one pending version.
 */
export async function showFromVersion(client: Client, bits: string, slotCount: number, version: number): Promise<void> {
  await client.query(
    `update kysely_scale.shard_guard set
       required_version = greatest(required_version, case when pending is not null and pending_version < $1 then pending_version else 0 end),
       pending = case when pending is not null and pending_version = $1 then pending | ${bits}::varbit else ${bits}::varbit end,
       pending_version = $1,
       hidden = nullif(coalesce(hidden, ${zeros(slotCount)}) & ~${bits}::varbit, ${zeros(slotCount)}), updated_at = now()`,
    [version],
  );
}

/** Pending slots become visible to every session: the shard requires their version from now on. */
export async function foldPending(client: Client): Promise<void> {
  await client.query(
    `update kysely_scale.shard_guard set required_version = greatest(required_version, pending_version), pending = null, pending_version = null, updated_at = now()
      where pending is not null`,
  );
}

/** Takes the slots in `bits` out of the pending ones (an aborted cutover). */
export async function unpendSlots(client: Client, bits: string, slotCount: number): Promise<void> {
  await client.query(
    `update kysely_scale.shard_guard set pending = nullif(pending & ~${bits}::varbit, ${zeros(slotCount)}), updated_at = now() where pending is not null;
     update kysely_scale.shard_guard set pending_version = null where pending is null`,
  );
}
