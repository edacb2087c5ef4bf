/** Credentials in an instance address (`http://user:pass@host`) become a Basic header, never part of a URL that is shown. */
import { ConfigError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';

/**
 * @internal
 * Splits the credentials off an HTTP origin: `url` without user and password (safe to show and to
 * connect to), and a Basic `authorization` header value when it had any. An address that is not a
 * URL (a typo in the port) throws a {@link ConfigError} naming `option` with the password hidden,
 * never the URL parser's error, whose `input`/`base` fields would carry the whole address.
 */
export function splitCredentials(
  address: string,
  option = 'address',
): { readonly url: string; readonly authorization: string | undefined } {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new ConfigError(option, `\`${redactText(address)}\` is not a URL such as http://10.0.0.1:8080`);
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
