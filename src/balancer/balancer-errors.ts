/**
 * Errors raised by the balancer. They use the stable codes of `src/kernel/errors.ts`, so callers can
 * switch on `error.code` whether the error came from a balancer or elsewhere.
 */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** The balancer has no instance it may use (none configured, or every one excluded or unfit). */
export class NoInstanceAvailableError extends KyselyScaleError<typeof ErrorCodes.NO_INSTANCE_AVAILABLE> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.NO_INSTANCE_AVAILABLE, message, { context });
  }
}

/** A cost-aware strategy found no instance whose estimated cost per request fits the budget. */
export class BudgetExceededError extends KyselyScaleError<typeof ErrorCodes.BUDGET_EXCEEDED> {
  constructor(maxCostPerRequest: number, cheapestCostPerRequest: number) {
    super(
      ErrorCodes.BUDGET_EXCEEDED,
      `No instance fits the budget: the cheapest estimated cost per request is ${cheapestCostPerRequest}, over the limit of ${maxCostPerRequest} (option \`maxCostPerRequest\`)`,
      { context: { maxCostPerRequest, cheapestCostPerRequest } },
    );
  }
}

/** A balanced call exceeded its timeout; the instance was released and charged a failure. */
export class RequestTimeoutError extends KyselyScaleError<typeof ErrorCodes.REQUEST_TIMEOUT> {
  constructor(instanceId: string, timeoutMillis: number) {
    super(ErrorCodes.REQUEST_TIMEOUT, `Call to instance \`${instanceId}\` exceeded its timeout of ${timeoutMillis} ms`, {
      context: { instanceId, timeoutMillis },
    });
  }
}
