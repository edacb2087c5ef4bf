/**
 * The database a connection URL names, as `host:port/database`, so two URLs that reach the same
 * database compare equal whatever their user, password or other parameters. It follows pg's own
 * reading of a URL (pg-connection-string): `?host=` and `?port=` win over the URL's, the port
 * defaults to 5432 and the database to the user name. Hosts are compared as written (lower case):
 * `localhost` and `127.0.0.1` are different addresses here; `kysely-scale-admin init` asks the
 * servers themselves and catches those.
 */
export function databaseAddress(url: string): string {
  const parsed = new URL(url);
  const params = parsed.searchParams;
  const host = (params.get('host') || decodeURIComponent(parsed.hostname.replace(/^\[(.+)\]$/, '$1'))).toLowerCase();
  const port = params.get('port') || parsed.port || '5432';
  const user = params.get('user') || decodeURIComponent(parsed.username);
  const path = parsed.pathname.slice(1);
  const database = path !== '' ? decodeURI(path) : user;
  return `${host}:${port}/${database}`;
}
