/**
 * Which shards of a move answer, for an abort that goes on without those that do not. Each shard is
 * asked once, up front and at once (a fresh connection and `select 1`, within a deadline: the
 * smaller of the shard connection deadline and `statementTimeoutMillis`), and a shard that does
 * not answer is not contacted again by this command, so a frozen one costs its deadline once, not
 * once per batch. A step that fails on a shard that answered counts as the shard's only when
 * asking it again finds it silent; any other failure stops the abort as before.
 */
import type { Client } from 'pg';
import type { Topology } from '../../cluster/topology';
import { redactText } from '../../kernel/redact';
import { withServerClient } from '../server-client';
import { SERVER_CLIENT_DEFAULTS } from '../server-client-options';
import type { MoveContext } from './move-context';
import { MoveFailedError, MoveRefusedError, ShardLockError } from './mover-errors';

/**
 * Reasons of mover errors that say nothing about a shard answering: another command took the move
 * or the shard over, the lock or a save is in doubt, a publish's outcome is unknown. They stop the
 * abort whatever a shard answers.
 */
const NOT_A_SHARD = new Set(['superseded', 'epoch-sequence-behind', 'record-changed', 'lock-lost', 'save-unconfirmed', 'no-epoch']);

/** The shards an abort found unreachable, and its sessions on the others. */
export class ShardReach {
  readonly #ctx: MoveContext;
  readonly #down = new Map<string, string>();

  constructor(ctx: MoveContext) {
    this.#ctx = ctx;
  }

  /** Each shard found unreachable, and why (the server named, its password hidden). */
  get down(): ReadonlyMap<string, string> {
    return this.#down;
  }

  /** Whether `id` was found unreachable. */
  isDown(id: string): boolean {
    return this.#down.has(id);
  }

  /** Asks every shard of `ids` in `topology` at once whether it answers; notes those that do not. */
  async ask(ids: Iterable<string>, topology: Topology): Promise<void> {
    await Promise.all([...new Set(ids)].filter((id) => !this.#down.has(id)).map((id) => this.#askOne(id, topology)));
  }

  /** The command's session on `id` (its epoch raised there), or undefined when the shard does not answer (noted). */
  async session(id: string, topology: Topology): Promise<Client | undefined> {
    if (this.#down.has(id)) return undefined;
    try {
      return await this.#ctx.session(id, topology);
    } catch (error) {
      if (await this.#explains([id], topology, error)) return undefined;
      throw error;
    }
  }

  /**
   * Runs `step` on `ids`: true once it is done; false when it failed and one of `ids` does not
   * answer now (noted: the step is left for a later abort); any other failure is thrown.
   */
  async attempt(ids: readonly string[], topology: Topology, step: () => Promise<void>): Promise<boolean> {
    try {
      await step();
      return true;
    } catch (error) {
      if (await this.#explains(ids, topology, error)) return false;
      throw error;
    }
  }

  /** Whether a shard of `ids` not answering explains `error` (each asked again, the silent ones noted). */
  async #explains(ids: readonly string[], topology: Topology, error: unknown): Promise<boolean> {
    if (!mayBeUnreachable(error)) return false;
    await Promise.all(ids.filter((id) => !this.#down.has(id)).map((id) => this.#askOne(id, topology)));
    return ids.some((id) => this.#down.has(id));
  }

  async #askOne(id: string, topology: Topology): Promise<void> {
    const url = topology.shardById(id)?.primary.url;
    if (url === undefined) return; // not in the topology: the session says so
    const millis = Math.min(SERVER_CLIENT_DEFAULTS.connectionTimeoutMillis, this.#ctx.tuning.statementTimeoutMillis);
    try {
      await withServerClient(url, id, (client) => client.query('select 1'), { connectionTimeoutMillis: millis, statementTimeoutMillis: millis });
    } catch (error) {
      // Duck-typed: a socket error of Node's fails `instanceof Error` across realms (under Jest).
      const message = (error as { message?: unknown } | null)?.message;
      this.#down.set(id, redactText(typeof message === 'string' ? message : String(error), [url]));
    }
  }
}

/** Whether `error` could come from a shard that stopped answering (then the shard is asked). */
function mayBeUnreachable(error: unknown): boolean {
  if (error instanceof MoveRefusedError || error instanceof ShardLockError) return false;
  if (error instanceof MoveFailedError) {
    const { reason, outcomeUnknown } = error.context;
    if (outcomeUnknown === true || (typeof reason === 'string' && NOT_A_SHARD.has(reason))) return false;
  }
  return true;
}
