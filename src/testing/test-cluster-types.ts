/**
 * Public types of the test cluster (`kysely-scale/testing`). Users write integration tests of
 * their own services against it, so these shapes are part of the public API.
 */

/** A server process (or container) of the test cluster that a test can stop and start again. */
export interface TestServer {
  /** Connection URL (`postgres://…` or `redis://…`) on a loopback address. Stable across stop/start. */
  readonly url: string;
  /** Loopback port. Stable across stop/start. */
  readonly port: number;
  /** Stops the server (fast shutdown); connections to it fail until `start()`. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port with the same data. */
  start(): Promise<void>;
  /** Whether the server is running. */
  readonly running: boolean;
  /** Process id while running (local backend only; undefined for containers or when stopped). */
  readonly pid?: number | undefined;
  /** The server's log file (local backend only), to read when a test fails. */
  readonly logFile?: string;
}

/** One shard of the test cluster: a primary and its streaming replicas. */
export interface TestShard {
  /** Shard id: `shard0`, `shard1`, … */
  readonly id: string;
  /** The primary (read-write). */
  readonly primary: TestServer;
  /** Real streaming replicas of the primary (read-only, hot standby). */
  readonly replicas: readonly TestServer[];
}

/** Redis servers requested from the test cluster. */
export interface TestRedisOptions {
  /**
   * Number of standalone Redis servers (for one-node L2, or a client-side ring of several).
   * @default 1
   */
  standalone?: number;
  /**
   * Also start a Redis Cluster with this many masters (no replicas), 0 for none.
   * @default 0
   */
  clusterMasters?: number;
}

/** Options of {@link startTestCluster}. */
export interface TestClusterOptions {
  /**
   * Number of PostgreSQL shards.
   * @default 2
   */
  shards?: number;
  /**
   * Streaming replicas per shard.
   * @default 0
   */
  replicasPerShard?: number;
  /**
   * Redis servers: `true` for one standalone server, `false` for none, or a detailed request.
   * @default false
   */
  redis?: boolean | TestRedisOptions;
  /**
   * Where servers run: `auto` uses Testcontainers when a Docker engine answers within
   * `dockerProbeTimeoutMillis`, otherwise local processes from installed binaries.
   * @default 'auto'
   */
  backend?: 'auto' | 'docker' | 'local';
  /**
   * How long to wait for a Docker engine to answer before falling back to local processes.
   * @default 1500
   */
  dockerProbeTimeoutMillis?: number;
  /**
   * Upper bound on the whole start, after which it fails and cleans up what it started.
   * @default 60000
   */
  startTimeoutMillis?: number;
  /**
   * Local backend: the folder in which the cluster creates its temporary folder (data and logs
   * of every server) and keeps the cached `initdb` template. The default prefers RAM: copying
   * data folders onto a disk file system can take ~10 times longer than the servers need to start.
   * @default `/dev/shm` when it is a writable folder with at least 1 GiB free (Linux), otherwise `os.tmpdir()`
   */
  baseTempDir?: string;
}

/** A running test cluster. Call `stop()` when done (it is also stopped when the process exits). */
export interface TestCluster {
  /** `docker` when the servers are containers, `local` when they are local processes. */
  readonly backend: 'docker' | 'local';
  /** The shards, in order (`shard0` first). */
  readonly shards: readonly TestShard[];
  /** Standalone Redis servers, in order. Empty when no Redis was requested. */
  readonly redis: readonly TestServer[];
  /** Seed URLs of the Redis Cluster masters. Empty when no Redis Cluster was requested. */
  readonly redisClusterNodes: readonly { host: string; port: number }[];
  /**
   * Creates a database named `name` on every primary (replicas receive it by streaming replication
   * and the promise resolves only once every running replica has it) and returns the shards' URLs pointing at it.
   * Lets test files share one cluster without sharing tables. Names are lower-case letters, digits and `_`;
   * an existing name fails with PostgreSQL's own error (SQLSTATE 42P04); a primary that does not
   * answer fails with `E_TEST_CLUSTER` naming the shard and the server.
   */
  createDatabase(name: string): Promise<readonly TestShardUrls[]>;
  /** Stops every server and removes their temporary folders. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * The folder holding every server's data and log (local backend only). It is removed by
   * `stop()`, or by a watchdog process if the test process dies without stopping the cluster.
   */
  readonly tempDir?: string;
}

/** Connection URLs of one shard for a given database. */
export interface TestShardUrls {
  readonly id: string;
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
}
