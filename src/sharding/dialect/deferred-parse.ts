/**
 * Parsing only the rows a scatter returns. A merge that picks rows (ORDER BY … LIMIT over n
 * shards reads up to n × LIMIT rows and returns LIMIT of them) compares hidden `::text` columns,
 * never the parsed values, so the shards' rows can arrive as PostgreSQL's text and be parsed once
 * picked, with the parsers the client would have used (its own, as pg's `getTypeParser` tells
 * them). In a profile of the scatter benchmark's ORDER BY + LIMIT 20 over four shards, parsing
 * the 80 rows' timestamps was the costliest JavaScript function (8% of the process's CPU; 2% after).
 */
type Row = Record<string, unknown>;

/** A client's pg type parser for text values of a type, by OID. */
export type TypeParsers = (oid: number) => (text: string) => unknown;

/** What a shard's result says of its rows: the type OIDs of its fields in order, and the parsers the client parsed them with. */
export interface RowDescription {
  readonly oids: readonly number[];
  /** The fields' names, in order (empty when not known: a cursor's). */
  readonly names: readonly string[];
  readonly parserOf: TypeParsers;
  /** The rows' values are PostgreSQL's text, not yet parsed by {@link RowDescription.parserOf}. */
  readonly unparsed?: boolean;
}

const asText = (text: string): string => text;

/**
 * A `types` option for one pg query that leaves every value as its text, and says afterwards
 * whether pg used it (a client that ignores the option parses as usual: `asked` stays false).
 */
export interface RawTypes {
  readonly getTypeParser: (oid: number, format?: string) => (text: string) => unknown;
  readonly asked: boolean;
}

/** A fresh {@link RawTypes} (one per query: `asked` is that query's). */
export function rawTypes(): RawTypes {
  const types = {
    asked: false,
    getTypeParser: (): ((text: string) => string) => {
      types.asked = true;
      return asText;
    },
  };
  return types;
}

/**
 * Parses, in place, the values of a row that arrived as text as `description` says pg would have
 * (`undefined` when its values arrived parsed). A name that two fields share holds the later
 * field's value, as in pg's rows, so it is parsed with that field's parser. `skip`: columns left
 * as text (the plan's hidden ones, dropped from the result anyway).
 */
export function rowParser(description: RowDescription | undefined, skip: ReadonlySet<string>): ((row: Row) => Row) | undefined {
  if (description?.unparsed !== true) return undefined;
  const byName = new Map<string, number>();
  description.names.forEach((name, i) => {
    if (!skip.has(name)) byName.set(name, i);
  });
  const names = [...byName.keys()];
  const parsers = [...byName.values()].map((i) => description.parserOf(description.oids[i]!));
  return (row) => {
    for (let i = 0; i < names.length; i++) {
      const value = row[names[i]!];
      if (typeof value === 'string') row[names[i]!] = parsers[i]!(value);
    }
    return row;
  };
}
