/**
 * Keeps passwords out of what the balancer shows: statistics, metrics, errors, events and the CLI.
 * An instance address such as `http://user:secret@10.0.0.1:8080` is shown as
 * `http://user:***@10.0.0.1:8080`.
 */
import { redactUrl } from '../kernel/errors';

/** The address with any password (and secret query parameters) replaced by `***`; unchanged when it has none. */
export function redactAddress(address: string): string {
  if (!address.includes('@') && !/password|sslkey/i.test(address)) return address;
  const redacted = redactUrl(address);
  // `URL` adds a `/` to a bare origin; keep the address's own shape.
  return redacted.endsWith('/') && !address.endsWith('/') ? redacted.slice(0, -1) : redacted;
}

/** Replaces every occurrence of each address's password in `text` with its redacted form. */
export function redactText(text: string, addresses: Iterable<string>): string {
  let out = text;
  for (const address of addresses) {
    const redacted = redactAddress(address);
    if (redacted !== address) out = out.split(address).join(redacted);
    const secret = passwordOf(address);
    if (secret !== undefined) out = out.split(secret).join('***');
  }
  return out;
}

function passwordOf(address: string): string | undefined {
  try {
    const url = new URL(address);
    if (url.password === '') return undefined;
    return url.password.length >= 3 ? url.password : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Splits the credentials off an HTTP origin: `url` without user and password (safe to show and to
 * connect to), and a Basic `authorization` header value when it had any.
 */
export function splitCredentials(address: string): { readonly url: string; readonly authorization: string | undefined } {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return { url: address, authorization: undefined };
  }
  if (url.username === '' && url.password === '') return { url: address, authorization: undefined };
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  url.username = '';
  url.password = '';
  const bare = url.toString();
  return {
    url: bare.endsWith('/') && !address.endsWith('/') ? bare.slice(0, -1) : bare,
    authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
  };
}
