/** Errors of the cluster model: shard keys that break the key contract, malformed topologies. */
import { ErrorCodes, KyselyScaleError } from '../kernel/errors';

/** A shard key value cannot be encoded under the key-encoding contract. */
export class ShardKeyError extends KyselyScaleError<typeof ErrorCodes.INVALID_SHARD_KEY> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_SHARD_KEY, message, { context });
  }
}

/** A topology is malformed; the message says what to fix. */
export class TopologyError extends KyselyScaleError<typeof ErrorCodes.INVALID_TOPOLOGY> {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(ErrorCodes.INVALID_TOPOLOGY, message, { context });
  }
}
