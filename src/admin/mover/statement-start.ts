/**
 * Another session's statement as an error may show it: what a lock's holder or a dropped session
 * was running, with every literal hidden (passwords, tokens and personal data sit in literals and
 * comments). A small lexer of PostgreSQL's SQL, not a pattern: it reads strings as PostgreSQL does
 * with `standard_conforming_strings` on (a backslash is an ordinary character, except in `E'…'`),
 * and where it cannot be sure what is a literal (a literal or quoted name left open, a dollar-quoted
 * body, a standard string whose reading depends on that setting, a character SQL does not use
 * outside literals) it hides the rest of the statement instead of guessing.
 */
import { redactText } from '../../kernel/redact';

/** Most characters of a statement shown. */
const STATEMENT_CHARS = 80;

/** Shown as they are between tokens: whitespace, punctuation, operators. */
const PLAIN = /[\s(),;.[\]:+\-*/<>=~!@#%^&|?]/;
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const DIGIT = /[0-9]/;
/** A dollar quote's opening delimiter (`$$`, `$tag$`) at the start of the text. */
const DOLLAR_QUOTE = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

/** Where a literal ends (the index after it), or why the lexer stops there. */
type LiteralEnd = number | 'open' | 'unsure';

/**
 * The mover's epoch check (`mover-epoch.ts`) where it leads a message of several statements: left
 * out, so the statement it guards is named (a message that is only the check keeps it).
 */
const EPOCH_CHECK = /select kysely_scale\.check_mover_epoch\(\?::bigint(?:, \?)?\); (?=\S)/g;

/** The start of `sql` for an error message: comments dropped, every literal shown as `?` (the rest hidden as `…` where unsure), the mover's epoch check left out, whitespace collapsed, at most 80 characters. */
export function statementStart(sql: string): string {
  const hidden = hideLiterals(sql).replace(/\s+/g, ' ').trim().replace(EPOCH_CHECK, '');
  return redactText(hidden.length > STATEMENT_CHARS ? `${hidden.slice(0, STATEMENT_CHARS - 1)}…` : hidden);
}

/** `sql` with comments as a space, each literal (string, number, dollar-quoted body) as `?`; what follows a point the lexer is unsure of is cut, marked `…`. */
export function hideLiterals(sql: string): string {
  let out = '';
  let i = 0;
  // A literal ends at `end`: shown as `?`; a literal left open is the rest of the text; unsure: the rest is hidden.
  const literal = (end: LiteralEnd): boolean => {
    if (end === 'open') out += '?';
    else if (end === 'unsure') out += '?…';
    else {
      out += '?';
      i = end;
      return true;
    }
    return false;
  };
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1] ?? '';
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      if (end < 0) return out;
      out += ' ';
      i = end;
    } else if (c === '/' && next === '*') {
      const end = blockCommentEnd(sql, i);
      if (end === undefined) return `${out} …`;
      out += ' ';
      i = end;
    } else if (c === "'") {
      if (!literal(standardStringEnd(sql, i + 1))) return out;
    } else if (c === '"') {
      const end = quotedNameEnd(sql, i + 1);
      if (end === undefined) return `${out}…`;
      out += sql.slice(i, end); // a name, not a literal
      i = end;
    } else if (c === '$') {
      if (DIGIT.test(next)) {
        // A parameter ($1): shown.
        let end = i + 1;
        while (DIGIT.test(sql[end] ?? '')) end++;
        out += sql.slice(i, end);
        i = end;
      } else {
        // A dollar-quoted body (function bodies, DO blocks; tags can nest): hidden with the rest.
        return DOLLAR_QUOTE.test(sql.slice(i)) ? `${out}?…` : `${out}…`;
      }
    } else if (IDENT_START.test(c)) {
      let end = i + 1;
      while (IDENT_PART.test(sql[end] ?? '')) end++;
      const word = sql.slice(i, end).toLowerCase();
      const after = sql[end];
      if (after === "'" && word === 'e') {
        i = end;
        if (!literal(escapeStringEnd(sql, end + 1))) return out;
      } else if (after === "'" && (word === 'b' || word === 'x' || word === 'n')) {
        i = end;
        if (!literal(standardStringEnd(sql, end + 1))) return out;
      } else if (after === '&' && word === 'u' && sql[end + 1] === "'") {
        i = end + 1;
        if (!literal(standardStringEnd(sql, end + 2))) return out;
      } else {
        out += sql.slice(i, end); // a keyword or a name (U&"…" follows as a quoted name)
        i = end;
      }
    } else if (DIGIT.test(c) || (c === '.' && DIGIT.test(next))) {
      literal(numberEnd(sql, i));
    } else if (PLAIN.test(c)) {
      out += c;
      i++;
    } else {
      return `${out}…`; // a backslash, a backquote, a brace: not SQL outside a literal
    }
  }
  return out;
}

/**
 * The end of a standard string whose text starts at `from` (after its quote): `''` is a quote in
 * it, a backslash an ordinary character. A quote right after an odd run of backslashes is unsure:
 * with `standard_conforming_strings` off (a session may set it) the backslash escapes that quote
 * and the literal goes on, so what follows could be literal text.
 */
function standardStringEnd(sql: string, from: number): LiteralEnd {
  let backslashes = 0;
  for (let j = from; j < sql.length; j++) {
    const c = sql[j];
    if (c === "'") {
      if (backslashes % 2 === 1) return 'unsure';
      if (sql[j + 1] !== "'") return j + 1;
      j++;
    }
    backslashes = c === '\\' ? backslashes + 1 : 0;
  }
  return 'open';
}

/** The end of an `E'…'` string whose text starts at `from`: a backslash escapes the next character, `''` is a quote. */
function escapeStringEnd(sql: string, from: number): LiteralEnd {
  for (let j = from; j < sql.length; j++) {
    const c = sql[j];
    if (c === '\\') j++;
    else if (c === "'") {
      if (sql[j + 1] !== "'") return j + 1;
      j++;
    }
  }
  return 'open';
}

/** The end of a quoted name whose text starts at `from` (`""` is a quote in it), or undefined when it is left open. */
function quotedNameEnd(sql: string, from: number): number | undefined {
  for (let j = from; j < sql.length; j++) {
    if (sql[j] !== '"') continue;
    if (sql[j + 1] !== '"') return j + 1;
    j++;
  }
  return undefined;
}

/** The end of a block comment starting at `from` (`/*`; they nest), or undefined when it is left open. */
function blockCommentEnd(sql: string, from: number): number | undefined {
  let depth = 0;
  for (let j = from; j < sql.length - 1; j++) {
    const pair = sql.slice(j, j + 2);
    if (pair === '/*') {
      depth++;
      j++;
    } else if (pair === '*/') {
      depth--;
      j++;
      if (depth === 0) return j + 1;
    }
  }
  return undefined;
}

/** The end of a number starting at `from`: digits, `.`, `_` separators, an exponent and its sign, `0x…` and the like (a letter glued on is hidden with it). */
function numberEnd(sql: string, from: number): number {
  let j = from;
  while (j < sql.length) {
    const c = sql[j]!;
    if (/[0-9A-Za-z_.]/.test(c) || ((c === '+' || c === '-') && /[eE]/.test(sql[j - 1] ?? '') && !/^0[xX]/.test(sql.slice(from, j)))) j++;
    else break;
  }
  return j;
}
