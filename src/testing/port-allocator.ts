import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/**
 * Ports are picked below the kernel's ephemeral range when possible: a server that a test stops
 * and starts again must get its port back, and a port inside the ephemeral range can meanwhile
 * become the local port of some outgoing connection. Redis Cluster nodes also need `port + 10000`
 * (the cluster bus), so the range stays below 32768 - 10000 when it can.
 */
const LOW_PORT = 15000;
const HIGH_PORT_EXCLUSIVE = 22000;
const RANDOM_ATTEMPTS = 200;

// Ports this process has handed out; a stopped server of another cluster still owns its port.
const handedOut = new Set<number>();

function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const value = Number(low);
    return Number.isInteger(value) && value > 0 ? value : 32768;
  } catch {
    return 32768; // not Linux; BSD/macOS use 49152 and up, so 32768 is a safe bound
  }
}

function listen(port: number): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Returns `count` distinct free loopback ports. With `withBusPort`, `port + 10000` is free too.
 * All probe sockets stay open until every port is chosen, so one call never returns duplicates.
 */
export async function allocatePorts(count: number, options: { withBusPort?: boolean } = {}): Promise<number[]> {
  const held: Server[] = [];
  const ports: number[] = [];
  const high = Math.min(HIGH_PORT_EXCLUSIVE, ephemeralLow() - (options.withBusPort === true ? 10000 : 0));
  try {
    let attempts = 0;
    for (let tries = 0; ports.length < count; tries += 1) {
      if (tries > RANDOM_ATTEMPTS * 5) throw new Error(`could not find ${count} free loopback ports`);
      let candidate = 0; // 0: let the kernel choose (fallback when the low range is crowded)
      if (high > LOW_PORT && attempts < RANDOM_ATTEMPTS) {
        candidate = LOW_PORT + Math.floor(Math.random() * (high - LOW_PORT));
        attempts += 1;
        if (handedOut.has(candidate)) continue;
      }
      const server = await listen(candidate);
      if (server === undefined) continue;
      held.push(server);
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      if (port === 0 || handedOut.has(port)) continue;
      if (options.withBusPort === true) {
        const bus = await listen(port + 10000);
        if (bus === undefined) continue;
        held.push(bus);
      }
      ports.push(port);
      handedOut.add(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map(close));
  }
}

/** Forgets ports of a stopped cluster so this process may hand them out again. */
export function releasePorts(ports: Iterable<number>): void {
  for (const port of ports) handedOut.delete(port);
}
