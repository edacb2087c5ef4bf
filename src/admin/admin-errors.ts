/** Errors of the topology catalog and of operator commands. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';
import { TopologyError } from '../cluster/cluster-errors';

/** A topology was published that is not newer than the catalog's latest: reload, re-plan and publish again. */
export class TopologyConflictError extends KyselyScaleError<typeof ErrorCodes.TOPOLOGY_CONFLICT> {
  constructor(message: string, context: { latest: number; attempted: number }) {
    super(ErrorCodes.TOPOLOGY_CONFLICT, message, { context });
  }
}

/** Another operator holds the catalog's operator lock: wait for it to finish, or find it with the context. */
export class OperatorBusyError extends KyselyScaleError<typeof ErrorCodes.OPERATOR_BUSY> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.OPERATOR_BUSY, message, { context });
  }
}

/** One problem a server check found; `server` is the URL with its password redacted. */
export interface ServerProblem {
  readonly shard: string;
  readonly role: 'primary' | 'replica';
  readonly server: string;
  readonly check: 'unreachable' | 'not-primary' | 'not-replica' | 'not-streaming' | 'other-primary' | 'other-database' | 'same-database' | 'unverifiable';
  readonly problem: string;
}

/**
 * The servers listed for a topology are not what it says (a server does not answer, a "primary"
 * is a standby, a "replica" does not stream from its shard's primary); nothing was published.
 * It carries `E_INVALID_TOPOLOGY` (it is a {@link TopologyError}); `problems` lists each finding.
 */
export class ServerCheckError extends TopologyError {
  readonly problems: readonly ServerProblem[];

  constructor(problems: readonly ServerProblem[]) {
    super(
      `The topology does not match its servers (${problems.length === 1 ? '1 problem' : `${problems.length} problems`}); nothing was published:\n` +
        problems.map((p) => `  ${p.shard} ${p.role} ${p.server} ${p.problem}`).join('\n'),
      { problems },
    );
    this.problems = Object.freeze([...problems]);
  }
}
