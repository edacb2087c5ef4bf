/**
 * The Lua scripts behind the L2 invariants: versioned fills (compare-and-set on a key's version),
 * write-through and invalidation (version bumps), and epoch counters for tags and namespaces.
 *
 * Versions and epochs start at a random base when created, so a Redis restart (which forgets them)
 * can never bring back an old number that a stale entry or load still holds (no ABA).
 */
import { createHash, randomInt } from 'node:crypto';
import type { RedisLike } from './l2-tier';

// A version key never expires before its value key: its TTL is the larger of the version TTL and
// the value's (WRITE sets it so; FILL extends it when the value would outlive it).
const BUMP = `local function bump(k, base, ttl)
  if redis.call('EXISTS', k) == 0 then redis.call('SET', k, base) end
  local v = redis.call('INCR', k)
  if tonumber(ttl) > 0 then redis.call('PEXPIRE', k, ttl) end
  return v
end
`;

/** KEYS: value, version. ARGV: expected version ('' = none), payload, ttl. */
const FILL = `local v = redis.call('GET', KEYS[2]) or ''
if v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if v ~= '' then
  local t = redis.call('PTTL', KEYS[2])
  if t >= 0 and t < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return 1`;

/** KEYS: value, version. ARGV: payload, ttl, base, version ttl. */
const WRITE = `${BUMP}
bump(KEYS[2], ARGV[3], math.max(tonumber(ARGV[4]), tonumber(ARGV[2])))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/** KEYS: value, version. ARGV: payload, ttl, base, version ttl, expected version ('' = none). */
const WRITE_IF = `${BUMP}
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[5] then return 0 end
bump(KEYS[2], ARGV[3], math.max(tonumber(ARGV[4]), tonumber(ARGV[2])))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/**
 * KEYS: value, version, source version. ARGV: payload, ttl, base, version ttl, source version
 * (decimal text). Refused when a greater source version was written; the source version outlives
 * invalidations (a delayed older write must not land after one) like the version key.
 */
const WRITE_VERSIONED = `${BUMP}
local cur = redis.call('GET', KEYS[3])
local new = ARGV[5]
if cur and (#cur > #new or (#cur == #new and cur > new)) then return 0 end
local keep = math.max(tonumber(ARGV[4]), tonumber(ARGV[2]))
redis.call('SET', KEYS[3], new, 'PX', keep)
bump(KEYS[2], ARGV[3], keep)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/** KEYS: value, version pairs. ARGV: base, version ttl. */
const INVALIDATE = `${BUMP}
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  bump(KEYS[i + 1], ARGV[1], ARGV[2])
end
return 1`;

/** KEYS: one epoch counter. ARGV: base. Returns the value, creating it when missing. */
const READ_EPOCH = `redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])`;

/** KEYS: one epoch counter. ARGV: base. */
const BUMP_EPOCH = `${BUMP}
return bump(KEYS[1], ARGV[1], '0')`;

const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex');
const SCRIPTS = { FILL, WRITE, WRITE_IF, WRITE_VERSIONED, INVALIDATE, READ_EPOCH, BUMP_EPOCH } as const;

/**
 * Name of one of the L2 scripts.
 * @internal
 */
export type ScriptName = keyof typeof SCRIPTS;

const SHAS: Record<ScriptName, string> = {
  FILL: sha1(FILL),
  WRITE: sha1(WRITE),
  WRITE_IF: sha1(WRITE_IF),
  WRITE_VERSIONED: sha1(WRITE_VERSIONED),
  INVALIDATE: sha1(INVALIDATE),
  READ_EPOCH: sha1(READ_EPOCH),
  BUMP_EPOCH: sha1(BUMP_EPOCH),
};

/**
 * A random base below 2^50 so INCR stays an exact double for a very long time.
 * @internal
 */
export const randomBase = (): string => String(randomInt(1, 2 ** 47) * 8);

/**
 * Runs a script by its SHA, sending the source only when the server does not have it cached (NOSCRIPT).
 * @internal
 */
export async function runScript(c: RedisLike, name: ScriptName, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await c.evalsha(SHAS[name], keys.length, ...keys, ...args);
  } catch (e) {
    if (!String((e as Error)?.message).includes('NOSCRIPT')) throw e;
    return c.eval(SCRIPTS[name], keys.length, ...keys, ...args);
  }
}
