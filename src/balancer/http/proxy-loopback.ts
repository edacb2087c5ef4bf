/** Which addresses are loopback: the admin endpoint listens on and answers only those. */

/** @internal `true` for a loopback host or client address. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').replace(/^::ffff:/, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
