/**
 * Requirements such as `gpu_memory >= 16GB` matched against an instance's capabilities.
 * Quantities may carry a unit: binary byte units (`KB`/`KiB`/`Ki` = 1024, `MB`, `GB`, `TB`, …),
 * `m` for thousandths (`500m` CPU), or none.
 */
import { ConfigError } from '../kernel/errors';
import type { CapabilityValue } from './balancer-instance';

/** Comparison operators a requirement may use. */
export type RequirementOperator = '>=' | '>' | '<=' | '<' | '==' | '!=';

/**
 * Requirements, either as `{ gpu_memory: '>=16GB' }` (the original design's form; a bare value
 * means `==`) or as a list of `'gpu_memory >= 16GB'` expressions.
 */
export type Requirements = Readonly<Record<string, string | number>> | readonly string[];

/** One parsed requirement. */
export interface Requirement {
  readonly name: string;
  readonly operator: RequirementOperator;
  readonly value: CapabilityValue;
}

const UNIT_FACTORS: Readonly<Record<string, number>> = Object.freeze({
  '': 1,
  m: 1e-3,
  b: 1,
  k: 1024,
  kb: 1024,
  ki: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
});

/** Compares by operator; a function per operator so a new operator without one fails to compile. */
const COMPARE: Readonly<Record<RequirementOperator, (have: number, want: number) => boolean>> = Object.freeze({
  '>=': (a, b) => a >= b,
  '>': (a, b) => a > b,
  '<=': (a, b) => a <= b,
  '<': (a, b) => a < b,
  '==': (a, b) => a === b,
  '!=': (a, b) => a !== b,
});

/** @internal The number a capability value stands for, or `undefined` for plain text such as `'a100'`. */
export function parseQuantity(value: CapabilityValue): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  const match = /^\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (match === null) return undefined;
  const unit = match[2] ?? '';
  // `m` is milli, `M…` is mega: only the lone lower-case `m` means thousandths.
  const key = unit === 'm' ? 'm' : unit.toLowerCase() === 'm' ? 'mb' : unit.toLowerCase();
  const factor = UNIT_FACTORS[key];
  return factor === undefined ? undefined : Number(match[1]) * factor;
}

const EXPRESSION = /^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<|=)\s*(.+?)\s*$/;
const VALUE_WITH_OPERATOR = /^\s*(>=|<=|==|!=|>|<|=)?\s*(.+?)\s*$/;

/** @internal Parses requirements into a frozen list; the error names the offending entry. */
export function parseRequirements(requirements: Requirements, option = 'requirements'): readonly Requirement[] {
  const parsed: Requirement[] = [];
  if (Array.isArray(requirements)) {
    for (const text of requirements as readonly string[]) {
      const m = EXPRESSION.exec(text);
      if (m === null) throw new ConfigError(option, `cannot parse \`${text}\`; write it like \`gpu_memory >= 16GB\``);
      parsed.push(requirement(m[1] as string, m[2] as string, m[3] as string));
    }
  } else {
    for (const [name, raw] of Object.entries(requirements as Readonly<Record<string, string | number>>)) {
      if (typeof raw === 'number') {
        parsed.push({ name, operator: '==', value: raw });
        continue;
      }
      const m = VALUE_WITH_OPERATOR.exec(raw);
      if (m === null) throw new ConfigError(option, `cannot parse \`${name}: ${raw}\``);
      parsed.push(requirement(name, m[1] ?? '==', m[2] as string));
    }
  }
  return Object.freeze(parsed.map((r) => Object.freeze(r)));
}

function requirement(name: string, operator: string, value: string): Requirement {
  return { name, operator: (operator === '=' ? '==' : operator) as RequirementOperator, value };
}

/** @internal `true` when the capabilities satisfy every requirement; a missing capability fails. */
export function meetsRequirements(
  capabilities: Readonly<Record<string, CapabilityValue>> | undefined,
  requirements: readonly Requirement[],
): boolean {
  for (const r of requirements) {
    const have = capabilities?.[r.name];
    if (have === undefined) return false;
    const a = parseQuantity(have);
    const b = parseQuantity(r.value);
    if (a !== undefined && b !== undefined) {
      if (!COMPARE[r.operator](a, b)) return false;
    } else {
      // Text such as a GPU model: only equality makes sense.
      const equal = String(have) === String(r.value);
      if (r.operator === '==' ? !equal : r.operator === '!=' ? equal : true) return false;
    }
  }
  return true;
}
