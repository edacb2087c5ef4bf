import type { Kysely } from 'kysely';

// The tests make this one fail on a chosen shard by creating `accounts` there beforehand.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createTable('accounts').addColumn('user_id', 'bigint', (c) => c.primaryKey()).addColumn('balance', 'numeric', (c) => c.notNull().defaultTo(0)).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('accounts').execute();
}
