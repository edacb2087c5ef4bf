import { redactUrl, RoutingError, ErrorCodes, KyselyScaleError } from '../../src/errors';

describe('errors', () => {
  it.each([
    ['postgres://app:s3cret@db:5432/app', 'postgres://app:***@db:5432/app'],
    ['postgres://app@db/app?password=s3cret&sslmode=require', 'postgres://app@db/app?password=***&sslmode=require'],
    ['postgres://app@db/app?sslpassword=s3cret', 'postgres://app@db/app?sslpassword=***'],
    ['postgres://u:p@ss@h:bad/db', 'postgres://u:***@h:bad/db'],
  ])('redacts %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
    expect(redactUrl(url)).not.toMatch(/s3cret|p@ss/);
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
