/**
 * PostgreSQL's and node-postgres's errors, annotated with where they happened: the shard id and
 * the server's role (`primary` or `replica`) as `shardId` and `serverRole` properties of the error
 * object itself (non-enumerable, so errors still compare and serialise as pg's own). The error is
 * never wrapped: `code`, `detail`, `constraint` and every other field of pg stay as they are.
 *
 * A failure to connect (server down, unknown host, database or role) also gets the shard, role and
 * redacted server address at the front of its message, and any password in its text is removed.
 */
import type { PoolClientLike } from '../../cluster/server-pools';
import type { ServerSpec, Topology } from '../../cluster/topology';
import { isConnectionFailure } from '../../cluster/connection-failure';
import { KyselyScaleError } from '../../kernel/errors';
import { redactText } from '../../kernel/redact';

/** Which server raised an error: its shard and role, and its address without password. */
export interface ServerIdentity {
  readonly shardId: string;
  readonly serverRole: 'primary' | 'replica';
  readonly server: string;
}

/** The properties kysely-scale adds to a pg error (non-enumerable). */
export interface ServerErrorFields {
  readonly shardId?: string;
  readonly serverRole?: 'primary' | 'replica';
  readonly server?: string;
}

const byTopology = new WeakMap<Topology, Map<string, ServerIdentity>>();

/** The shard and role of `server` in `topology` (`undefined` for a server it no longer lists). */
export function identifyServer(topology: Topology, server: ServerSpec): ServerIdentity | undefined {
  let identities = byTopology.get(topology);
  if (identities === undefined) {
    identities = new Map();
    for (const shard of topology.shards) {
      for (const replica of shard.replicas) identities.set(replica.url, Object.freeze({ shardId: shard.id, serverRole: 'replica', server: replica.redactedUrl }));
      identities.set(shard.primary.url, Object.freeze({ shardId: shard.id, serverRole: 'primary', server: shard.primary.redactedUrl }));
    }
    byTopology.set(topology, identities);
  }
  return identities.get(server.url);
}

// The server each checked-out client belongs to (a client never changes server; its role may
// change with the topology, so the identity is looked up again under a new topology).
const clientServers = new WeakMap<PoolClientLike, { readonly identity: ServerIdentity | undefined; readonly topology: Topology }>();

/** Remembers the server of a checked-out client, so its statement errors can name it. One WeakMap read per checkout once known. */
export function noteClientServer(client: PoolClientLike, topology: Topology, server: ServerSpec): void {
  if (clientServers.get(client)?.topology === topology) return;
  clientServers.set(client, { identity: identifyServer(topology, server), topology });
}

function define(error: object, fields: ServerErrorFields): void {
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) Object.defineProperty(error, name, { value, enumerable: false, configurable: true, writable: true });
  }
}

// Duck-typed: socket errors may come from another realm (Node's own Error), where instanceof fails.
function isErrorLike(error: unknown): error is Error {
  return typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string';
}

// Our own errors (a destroyed dialect, a primary known down) already say where and why.
function isOwnError(error: object): boolean {
  return error instanceof KyselyScaleError;
}

/** Adds the client's shard and role to a statement's error (once; other errors pass through). */
export function annotateStatementError(error: unknown, client: PoolClientLike): unknown {
  if (isConnectionFailure(error)) markBroken(client);
  if (typeof error !== 'object' || error === null || isOwnError(error) || Object.prototype.hasOwnProperty.call(error, 'shardId')) return error;
  const identity = clientServers.get(client)?.identity;
  if (identity !== undefined && Object.isExtensible(error)) define(error, identity);
  return error;
}

/**
 * Names the server in an error raised while checking out a client of `server`: shard, role and
 * redacted address in front of the message, passwords out of its text, pg's fields kept.
 */
export function annotateConnectionError(error: unknown, server: ServerSpec, identity: ServerIdentity | undefined): unknown {
  if (!isErrorLike(error)) return error;
  if (isOwnError(error) || Object.prototype.hasOwnProperty.call(error, 'server') || !Object.isExtensible(error)) return error;
  const where = identity === undefined ? `server ${server.redactedUrl}` : `shard "${identity.shardId}" ${identity.serverRole} ${identity.server}`;
  const message = redactText(error.message, [server.url]);
  error.message = `Cannot connect to ${where}: ${message}`;
  if (typeof error.stack === 'string') error.stack = redactText(error.stack, [server.url]);
  // Node's URL errors carry the whole input, password included.
  const input = (error as { input?: unknown }).input;
  if (typeof input === 'string') (error as { input?: unknown }).input = redactText(input, [server.url]);
  define(error, identity ?? { server: server.redactedUrl });
  return error;
}

const BROKEN = Symbol('kysely-scale.brokenClient');

/**
 * Notes that `client`'s connection failed under a statement. pg-pool discards a client it sees
 * unusable at release, but the socket's end may reach the client only after the statement's error
 * did: released then, the broken client would go back to its pool and fail the next statement.
 */
function markBroken(client: PoolClientLike): void {
  (client as { [BROKEN]?: true })[BROKEN] = true;
}

/** Whether a statement on `client` failed because its connection did (see {@link markBroken}): close it, never reuse it. */
export function isBroken(client: PoolClientLike): boolean {
  return (client as { [BROKEN]?: true })[BROKEN] === true;
}
