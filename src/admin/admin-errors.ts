/** Errors of the topology catalog and of operator commands. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

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
