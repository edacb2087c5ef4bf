/**
 * Keeps passwords out of everything kysely-scale shows: logs, errors, error fields, statistics,
 * metrics, events and CLI output. One module so every layer hides secrets the same way.
 */

// Connection parameters that carry secrets in a URL's query string.
const SECRET_PARAMS = ['password', 'sslpassword', 'sslkey', 'sslcert'];

/** Replaces the password (and secret query parameters) of a connection URL with `***`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    for (const name of SECRET_PARAMS) if (parsed.searchParams.has(name)) parsed.searchParams.set(name, '***');
    return parsed.toString();
  } catch {
    return redactText(url);
  }
}

/**
 * An address (`http://user:secret@10.0.0.1:8080`, `postgres://…`) with its password replaced by
 * `***`, keeping the address's own shape (no `/` added to a bare origin); unchanged when it has none.
 */
export function redactAddress(address: string): string {
  if (!address.includes('@') && !/password|sslkey/i.test(address)) return address;
  const redacted = redactUrl(address);
  return redacted.endsWith('/') && !address.endsWith('/') ? redacted.slice(0, -1) : redacted;
}

/**
 * Text (an error message, a command line) with every password hidden. It errs towards hiding:
 * everything from `user:` to the last `@` of a URL-like run goes, since a password may hold spaces
 * or `@`; quoted `password='…'` values go whole. When `knownAddresses` are given, their passwords
 * are also removed wherever they appear on their own (a client library may print one without its URL).
 */
export function redactText(text: string, knownAddresses: Iterable<string> = []): string {
  let out = text;
  for (const address of knownAddresses) {
    const secret = passwordOf(address);
    if (secret !== undefined) out = out.split(secret).join('***');
  }
  return out
    .replace(/(\/\/[^:/@\s]*:).*@/g, '$1***@')
    .replace(/((?:password|sslpassword|sslkey)\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^&\s]*)/gi, '$1***');
}

function passwordOf(address: string): string | undefined {
  try {
    const url = new URL(address);
    if (url.password === '') return undefined;
    // Very short passwords would blank out unrelated text; the URL pattern still hides them in URLs.
    return url.password.length >= 3 ? decodeURIComponent(url.password) : undefined;
  } catch {
    return undefined;
  }
}
