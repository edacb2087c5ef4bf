/** One `--upstream` argument (`id=url#weight`) as an instance spec, with its password kept out of ids and errors. */
import { ConfigError } from '../../kernel/errors';
import { redactAddress, redactText } from '../../kernel/redact';
import type { InstanceSpec } from '../balancer-instance';

/**
 * @internal
 * Parses `id=url#weight`, `url#weight` or `url`. Without an id, the id is the URL with any
 * password replaced by `***` (ids appear in statistics, metrics, errors and logs).
 */
export function parseUpstream(text: string): InstanceSpec {
  const eq = text.indexOf('=');
  const id = eq > 0 && !text.slice(0, eq).includes('/') ? text.slice(0, eq) : undefined;
  const rest = id === undefined ? text : text.slice(eq + 1);
  const hash = rest.lastIndexOf('#');
  const address = hash >= 0 ? rest.slice(0, hash) : rest;
  const weightText = hash >= 0 ? rest.slice(hash + 1) : undefined;
  // Nothing after `#` is ever echoed: it may be the rest of a password (`alice:1234#secret@host`).
  const shown = redactText(text);
  if (weightText?.includes('@') === true) {
    throw new ConfigError(
      'upstreams',
      `\`${shown}\` has a \`#\` in its password: write it as %23 (a \`#\` after the URL sets a weight, as in url#3)`,
    );
  }
  try {
    new URL(address);
  } catch {
    throw new ConfigError('upstreams', `\`${shown}\` is not a URL such as http://127.0.0.1:8081`);
  }
  const weight = weightText === undefined ? undefined : Number(weightText);
  if (weight !== undefined && !(weightText !== '' && Number.isFinite(weight) && weight > 0)) {
    throw new ConfigError('upstreams', `weight of \`${redactAddress(address)}\` (after its last \`#\`) must be a finite number > 0`);
  }
  const finalId = id ?? redactAddress(address);
  return weight === undefined ? { id: finalId, address } : { id: finalId, address, weight };
}
