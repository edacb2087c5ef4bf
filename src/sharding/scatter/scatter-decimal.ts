/**
 * Exact decimal arithmetic for merging PostgreSQL `numeric` and `bigint` values, which node-postgres
 * returns as strings. Addition keeps PostgreSQL's display scale (the larger of the two scales) and
 * division reproduces `numeric_div` (`select_div_scale` + round half away from zero), so a merged
 * `sum` or `avg` has the same text as the one a single database would print.
 *
 * @packageDocumentation
 */

/** A finite decimal `unscaled × 10^-scale`, or one of numeric's special values. */
export type Decimal =
  | { readonly kind: 'finite'; readonly unscaled: bigint; readonly scale: number }
  | { readonly kind: 'nan' }
  | { readonly kind: 'inf'; readonly negative: boolean };

const NAN: Decimal = Object.freeze({ kind: 'nan' });
const POS_INF: Decimal = Object.freeze({ kind: 'inf', negative: false });
const NEG_INF: Decimal = Object.freeze({ kind: 'inf', negative: true });
const DECIMAL_TEXT = /^([+-]?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * Parses PostgreSQL's text form of a numeric, an integer or a float (`1.5e-07`, `1e+20`: a float's
 * shortest exact text); returns `undefined` for anything else.
 */
export function parseDecimal(text: string): Decimal | undefined {
  const match = DECIMAL_TEXT.exec(text);
  if (match === null) {
    if (text === 'NaN') return NAN;
    if (text === 'Infinity') return POS_INF;
    if (text === '-Infinity') return NEG_INF;
    return undefined;
  }
  const fraction = match[3] ?? '';
  let magnitude = BigInt((match[2] ?? '0') + fraction);
  let scale = fraction.length - Number(match[4] ?? 0);
  if (scale < 0) {
    magnitude *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { kind: 'finite', unscaled: match[1] === '-' ? -magnitude : magnitude, scale };
}

/** Converts a JS integer or bigint to a decimal of scale 0. */
export function decimalFromInteger(value: bigint | number): Decimal {
  return { kind: 'finite', unscaled: BigInt(value), scale: 0 };
}

/** PostgreSQL's text form: no exponent, exactly `scale` fraction digits, never `-0`. */
export function formatDecimal(value: Decimal): string {
  if (value.kind === 'nan') return 'NaN';
  if (value.kind === 'inf') return value.negative ? '-Infinity' : 'Infinity';
  const negative = value.unscaled < 0n;
  const digits = (negative ? -value.unscaled : value.unscaled).toString().padStart(value.scale + 1, '0');
  const cut = digits.length - value.scale;
  const text = value.scale === 0 ? digits : `${digits.slice(0, cut)}.${digits.slice(cut)}`;
  return negative ? `-${text}` : text;
}

function rescale(unscaled: bigint, from: number, to: number): bigint {
  return to === from ? unscaled : unscaled * 10n ** BigInt(to - from);
}

/** Exact sum with PostgreSQL's rules: NaN absorbs, +∞ + -∞ is NaN, scale is the larger one. */
export function addDecimal(a: Decimal, b: Decimal): Decimal {
  if (a.kind === 'nan' || b.kind === 'nan') return NAN;
  if (a.kind === 'inf') return b.kind === 'inf' && b.negative !== a.negative ? NAN : a;
  if (b.kind === 'inf') return b;
  const scale = Math.max(a.scale, b.scale);
  return { kind: 'finite', unscaled: rescale(a.unscaled, a.scale, scale) + rescale(b.unscaled, b.scale, scale), scale };
}

/** Total order of numeric: -∞ < finite < +∞ < NaN (PostgreSQL sorts NaN above every number). */
export function compareDecimal(a: Decimal, b: Decimal): number {
  const rank = (d: Decimal): number => (d.kind === 'nan' ? 2 : d.kind === 'inf' ? (d.negative ? -1 : 1) : 0);
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb || a.kind !== 'finite' || b.kind !== 'finite') return ra - rb;
  const scale = Math.max(a.scale, b.scale);
  const x = rescale(a.unscaled, a.scale, scale);
  const y = rescale(b.unscaled, b.scale, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Canonical text for equality (GROUP BY, DISTINCT): `1.0` and `1.00` are the same numeric. */
export function canonicalDecimal(value: Decimal): string {
  if (value.kind !== 'finite') return formatDecimal(value);
  let { unscaled, scale } = value;
  while (scale > 0 && unscaled % 10n === 0n) {
    unscaled /= 10n;
    scale -= 1;
  }
  return formatDecimal({ kind: 'finite', unscaled, scale });
}

// Constants of PostgreSQL's numeric.c: NBASE 10000 digits of DEC_DIGITS decimal digits each.
const DEC_DIGITS = 4;
const NUMERIC_MIN_SIG_DIGITS = 16;
const NUMERIC_MIN_DISPLAY_SCALE = 0;
const NUMERIC_MAX_DISPLAY_SCALE = 1000;

/** Weight and value of the first non-zero base-10000 digit, as numeric.c stores them (0, 0 for zero). */
function firstBaseDigit(unscaled: bigint, scale: number): { weight: number; digit: number } {
  if (unscaled === 0n) return { weight: 0, digit: 0 };
  const text = (unscaled < 0n ? -unscaled : unscaled).toString();
  const integerDigits = text.length - scale;
  if (integerDigits > 0) {
    const firstLength = ((integerDigits - 1) % DEC_DIGITS) + 1;
    return { weight: Math.ceil(integerDigits / DEC_DIGITS) - 1, digit: Number(text.slice(0, firstLength)) };
  }
  const fraction = '0'.repeat(-integerDigits) + text;
  const group = Math.floor(-integerDigits / DEC_DIGITS);
  const digits = fraction.slice(group * DEC_DIGITS, group * DEC_DIGITS + DEC_DIGITS).padEnd(DEC_DIGITS, '0');
  return { weight: -(group + 1), digit: Number(digits) };
}

/**
 * `dividend / divisor` exactly as PostgreSQL's `numeric_div` prints it: the result scale of
 * `select_div_scale` (at least 16 significant digits, never below either input's scale) and
 * rounding half away from zero at that scale. `avg` over integers and numerics is
 * `numeric_div(sum, count)`, so this reproduces `avg` to the last digit. The caller passes a
 * positive divisor (a count it checked); anything else is a bug here, hence a RangeError rather
 * than a coded error.
 */
export function divideDecimalLikePostgres(dividend: Decimal, divisor: bigint): Decimal {
  if (divisor <= 0n) throw new RangeError('divisor must be positive');
  if (dividend.kind !== 'finite') return dividend;
  const first = firstBaseDigit(dividend.unscaled, dividend.scale);
  const second = firstBaseDigit(divisor, 0);
  let qweight = first.weight - second.weight;
  if (first.digit <= second.digit) qweight -= 1;
  let scale = NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS;
  scale = Math.max(scale, dividend.scale, NUMERIC_MIN_DISPLAY_SCALE);
  scale = Math.min(scale, NUMERIC_MAX_DISPLAY_SCALE);
  const negative = dividend.unscaled < 0n;
  const shift = scale - dividend.scale;
  const magnitude = (negative ? -dividend.unscaled : dividend.unscaled) * 10n ** BigInt(Math.max(shift, 0));
  const denominator = divisor * 10n ** BigInt(Math.max(-shift, 0));
  const rounded = (2n * magnitude + denominator) / (2n * denominator);
  return { kind: 'finite', unscaled: negative ? -rounded : rounded, scale };
}
