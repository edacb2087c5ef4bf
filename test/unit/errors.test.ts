import { ErrorCodes, KyselyScaleError } from '../../src/kernel/errors';
import { redactText, redactUrl } from '../../src/kernel/redact';
import { RoutingError } from '../../src/sharding/sharding-errors';

describe('errors', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/app', 'postgres://app:***@db:5432/app'],
    ['postgres://app@db/app?password=s3cret&sslmode=require', 'postgres://app@db/app?password=***&sslmode=require'],
    ['postgres://app@db/app?sslpassword=s3cret', 'postgres://app@db/app?sslpassword=***'],
    ['postgres://u:p@ss@h:bad/db', 'postgres://u:***@h:bad/db'],
    ['postgres://u:pa s3cret@h:99999/db', 'postgres://u:***@h:99999/db'],
  ])('redacts %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
    expect(redactUrl(url)).not.toMatch(/s3cret|p@ss/);
  });

  it.each([
    ['connect to postgres://app:s3cret@db:5432/app failed', 'connect to postgres://app:***@db:5432/app failed'],
    ['a=postgres://u:s3cret@h1/db, b=postgres://v:s3cret@h2/db', 'a=postgres://u:***@h2/db'],
    ["host=db password='s3 cret' user=app", 'host=db password=*** user=app'],
    ['no secrets here: 127.0.0.1:5432', 'no secrets here: 127.0.0.1:5432'],
  ])('redacts free text %s', (text, expected) => {
    expect(redactText(text)).toBe(expected);
    expect(redactText(text)).not.toMatch(/s3cret|s3 cret/);
  });

  it('carries a stable code, a frozen context and the class name', () => {
    const error = new RoutingError(ErrorCodes.NO_SHARD_KEY, 'no key', { table: 'orders' });
    expect(error).toBeInstanceOf(KyselyScaleError);
    expect(error.name).toBe('RoutingError');
    expect(error.code).toBe('E_NO_SHARD_KEY');
    expect(Object.isFrozen(error.context)).toBe(true);
    expect(error.context.table).toBe('orders');
  });
});
