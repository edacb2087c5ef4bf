import { sql, type Kysely } from 'kysely';

// Uses the slot function, which migrateShards installs before running migrations.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createTable('orders').addColumn('id', 'bigint', (c) => c.primaryKey()).addColumn('user_id', 'bigint', (c) => c.notNull()).execute();
  await sql`create index orders_slot on orders (kysely_scale_slot(user_id))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('orders').execute();
}
