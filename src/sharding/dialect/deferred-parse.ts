/**
 * Parsing only the rows a scatter returns. A merge that picks rows (ORDER BY … LIMIT over n
 * shards reads up to n × LIMIT rows and returns LIMIT of them) compares hidden `::text` columns,
 * never the parsed values, so the shards' rows can arrive as PostgreSQL's text and be parsed once
 * picked, with the parsers the client would have used (its own, as pg's `getTypeParser` tells
 * them). A parser then also fails only on a value that is returned, as on one database.
 */
import type { RowDescription, TypeParsers } from './row-description';

type Row = Record<string, unknown>;

const asText = (text: string): string => text;

/**
 * A `types` option for one pg query that leaves text values as text (binary ones go to the
 * client's parsers), and says afterwards whether pg used it for text: `valuesAreText` stays false
 * for a client that ignores the option, or that reads in binary.
 */
export interface TextTypes {
  readonly getTypeParser: (oid: number, format?: string) => (value: never) => unknown;
  readonly valuesAreText: boolean;
}

/** A fresh {@link TextTypes} for one query; `binaryParser` serves fields in binary format. */
export function textTypes(binaryParser: (oid: number, format: string) => (value: never) => unknown): TextTypes {
  let text = false;
  let binary = false;
  return {
    getTypeParser: (oid, format = 'text') => {
      if (format !== 'text') {
        binary = true;
        return binaryParser(oid, format);
      }
      text = true;
      return asText;
    },
    get valuesAreText() {
      return text && !binary;
    },
  };
}

/**
 * Parses, in place, the values of a row that arrived as text as `description` says pg would have
 * (`undefined` when its values arrived parsed). A name that two fields share holds the later
 * field's value, as in pg's rows, so it is parsed with that field's parser. `skip`: columns left
 * as text (the plan's hidden ones, dropped from the result anyway). A parser's error is the
 * statement's, naming the shard that sent the row.
 */
export function rowParser(description: RowDescription | undefined, skip: ReadonlySet<string>): ((row: Row) => Row) | undefined {
  if (description?.valuesAreText !== true) return undefined;
  const byName = new Map<string, number>();
  description.names.forEach((name, i) => {
    if (!skip.has(name)) byName.set(name, i);
  });
  const names = [...byName.keys()];
  const parsers = [...byName.values()].map((i) => description.parserOf(description.oids[i]!));
  return (row) => {
    try {
      for (let i = 0; i < names.length; i++) {
        const value = row[names[i]!];
        // SQL NULL arrives as null, never handed to a parser (as pg does).
        if (value !== null) row[names[i]!] = parsers[i]!(value as string);
      }
    } catch (error) {
      throw description.annotate?.(error) ?? error;
    }
    return row;
  };
}

/**
 * Rows of a result read as text with names missing from its description (a custom client's
 * `fields` without `name`): parsed now, by position, when each row has one key per field; else
 * `undefined` (the caller refuses).
 */
export function parseByPosition(rows: readonly Row[], oids: readonly number[], parserOf: TypeParsers): Row[] | undefined {
  const parsers = oids.map((oid) => parserOf(oid));
  for (const row of rows) {
    const keys = Object.keys(row);
    if (keys.length !== parsers.length) return undefined;
    keys.forEach((key, i) => {
      if (row[key] !== null) row[key] = parsers[i]!(row[key] as string);
    });
  }
  return rows as Row[];
}
