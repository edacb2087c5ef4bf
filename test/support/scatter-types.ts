/**
 * For tests that run a scatter plan's shard statement with raw pg and merge the rows themselves:
 * the merge's types from the shards' row descriptions, for built-in types (the dialect also looks
 * up enums and other user types on each shard).
 */
import { types as pgTypes } from 'pg';
import { BUILT_IN_TYPE_NAMES } from '../../src/sharding/scatter/pg-type-oids';
import { FieldTypes, fieldPositions } from '../../src/sharding/scatter/scatter-field-types';
import type { ScatterPlan } from '../../src/sharding/scatter/scatter-plan';
import type { TypeLookup } from '../../src/sharding/scatter/scatter-compare';

/** What the merge reads of a pg result. */
interface DescribedResult {
  readonly rows: readonly unknown[];
  readonly fields: readonly { readonly dataTypeID: number }[];
}

/**
 * The types of `plan`'s compared values in `results` (one per shard); `undefined` when it compares
 * none. `parserOf`: the pg type parsers the rows were parsed with (merged aggregates are handed to them).
 */
export function builtInTypes(plan: ScatterPlan, results: readonly DescribedResult[], parserOf?: (oid: number) => (text: string) => unknown): FieldTypes | undefined {
  if (plan.typeFields.length === 0) return undefined;
  const types = new FieldTypes();
  types.useParsers(parserOf ?? ((oid) => pgTypes.getTypeParser(oid, 'text')));
  results.forEach((result, i) => {
    const oids = result.fields.map((field) => field.dataTypeID);
    const names = fieldPositions(plan.fields, plan.typeFields, oids.length).map((at) => BUILT_IN_TYPE_NAMES.get(oids[at]!) ?? 'a user-defined type');
    types.add(`shard${i}`, plan.typeFields, names, new Map());
  });
  return types;
}

/** Runs `plan.merge` over pg results, with their types (and the parsers they were parsed with, default pg's). */
export function mergeResults(plan: ScatterPlan, results: readonly DescribedResult[], parserOf?: (oid: number) => (text: string) => unknown): Record<string, unknown>[] {
  return plan.merge(
    results.map((result) => result.rows as Record<string, unknown>[]),
    builtInTypes(plan, results, parserOf),
  );
}

/** A lookup giving every compared value the type `name` (canned rows of one type in unit tests). */
export function allOfType(name: string): TypeLookup {
  return { fieldType: () => name, enumLabels: () => undefined };
}
