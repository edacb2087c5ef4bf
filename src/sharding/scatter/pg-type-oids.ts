/**
 * Names of the built-in PostgreSQL types the scatter merge orders exactly, by type OID, spelled as
 * `format_type(oid, NULL)` (and `pg_typeof(...)::text`) prints them. A shard's row description gives
 * each column's type OID at no cost; built-in OIDs are fixed across servers and versions, so these
 * need no query. Any other OID (enums, other built-ins) is looked up on the shard that reported it.
 *
 * @packageDocumentation
 */

/** Built-in type OID → type name, for the scalar types scatter-compare orders and their arrays. */
export const BUILT_IN_TYPE_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [16, 'boolean'],
  [1000, 'boolean[]'],
  [17, 'bytea'],
  [1001, 'bytea[]'],
  [19, 'name'],
  [1003, 'name[]'],
  [20, 'bigint'],
  [1016, 'bigint[]'],
  [21, 'smallint'],
  [1005, 'smallint[]'],
  [23, 'integer'],
  [1007, 'integer[]'],
  [25, 'text'],
  [1009, 'text[]'],
  [26, 'oid'],
  [1028, 'oid[]'],
  [650, 'cidr'],
  [651, 'cidr[]'],
  [700, 'real'],
  [1021, 'real[]'],
  [701, 'double precision'],
  [1022, 'double precision[]'],
  [774, 'macaddr8'],
  [775, 'macaddr8[]'],
  [829, 'macaddr'],
  [1040, 'macaddr[]'],
  [869, 'inet'],
  [1041, 'inet[]'],
  [1042, 'character'],
  [1014, 'character[]'],
  [1043, 'character varying'],
  [1015, 'character varying[]'],
  [1082, 'date'],
  [1182, 'date[]'],
  [1083, 'time without time zone'],
  [1183, 'time without time zone[]'],
  [1114, 'timestamp without time zone'],
  [1115, 'timestamp without time zone[]'],
  [1184, 'timestamp with time zone'],
  [1185, 'timestamp with time zone[]'],
  [1186, 'interval'],
  [1187, 'interval[]'],
  [1266, 'time with time zone'],
  [1270, 'time with time zone[]'],
  [1560, 'bit'],
  [1561, 'bit[]'],
  [1562, 'bit varying'],
  [1563, 'bit varying[]'],
  [1700, 'numeric'],
  [1231, 'numeric[]'],
  [2950, 'uuid'],
  [2951, 'uuid[]'],
]);
