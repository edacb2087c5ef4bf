/** What a shard's result says of its rows, as scatter merges need it. */

/** A client's pg type parser for text values of a type, by OID. */
export type TypeParsers = (oid: number) => (text: string) => unknown;

/** What a shard's result says of its rows: its fields' type OIDs and names in order, and the parsers of the client that read them. */
export interface RowDescription {
  readonly oids: readonly number[];
  /** The fields' names, in order (empty when not known: a cursor's). */
  readonly names: readonly string[];
  readonly parserOf: TypeParsers;
  /** The rows' values are PostgreSQL's text, still to be parsed with {@link RowDescription.parserOf} (see deferred-parse.ts). */
  readonly valuesAreText?: boolean;
  /** The error of a parser of these rows as the statement's own error (naming the shard and server). */
  readonly annotate?: (error: unknown) => unknown;
}
