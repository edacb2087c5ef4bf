/** Credentials in an instance address (`http://user:pass@host`) become a Basic header, never part of a URL that is shown. */

/**
 * @internal
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
