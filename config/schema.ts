import { z } from 'zod';

/**
 * The one schema for all troupe configuration. Every field is optional in the file and in the
 * environment; the defaults below are what you get. Types are inferred from this schema.
 */

const natsSchema = z
  .object({
    /**
     * Servers of an existing NATS deployment (comma-separated in `NATS_URL`). When absent, troupe
     * starts its own `nats-server -js` on a free loopback port (the embedded default).
     */
    servers: z.array(z.string().min(1)).optional(),
    /** Path to a `.creds` file (`NATS_CREDS`). */
    credsFile: z.string().optional(),
    /** User and password (`NATS_USER`, `NATS_PASSWORD`). */
    user: z.string().optional(),
    password: z.string().optional(),
    /** Connection name shown by the server. @default "troupe" */
    name: z.string().default('troupe'),
  })
  .strict()
  .prefault({});

const embeddedSchema = z
  .object({
    /** Directory of the embedded server's JetStream store. @default ".troupe/nats" */
    storeDir: z.string().default('.troupe/nats'),
    /** Port of the embedded server; 0 picks a free one. @default 0 */
    port: z.number().int().min(0).max(65535).default(0),
    /** Path of the `nats-server` binary. @default "nats-server" (from PATH) */
    binary: z.string().default('nats-server'),
  })
  .strict()
  .prefault({});

const streamsSchema = z
  .object({
    /**
     * Replica count of every stream and bucket troupe creates: 1 on a single server, 3 or 5 on a
     * NATS cluster of at least that many servers (checked against the servers at start-up).
     * @default 1
     */
    replicas: z
      .union([z.literal(1), z.literal(3), z.literal(5)], { error: (issue) => `must be 1 (a single server), 3 or 5 (a NATS cluster of at least that many servers); got ${JSON.stringify(issue.input)}` })
      .default(1),
    /** How long task events stay in `TROUPE_EVENTS`. @default 604800000 (7 days) */
    eventsMaxAgeMs: z.number().int().positive().default(7 * 24 * 3600 * 1000),
    /** How long audit records stay in `TROUPE_AUDIT` (payloads they reference stay as long). @default 2592000000 (30 days) */
    auditMaxAgeMs: z.number().int().positive().default(30 * 24 * 3600 * 1000),
    /** How long rejected submissions stay in `TROUPE_REJECTED`. @default 604800000 (7 days) */
    rejectedMaxAgeMs: z.number().int().positive().default(7 * 24 * 3600 * 1000),
    /** Window in which a repeated `Nats-Msg-Id` (the taskId) is dropped by JetStream. @default 120000 */
    duplicateWindowMs: z.number().int().positive().default(120_000),
  })
  .strict()
  .prefault({});

const hostSchema = z
  .object({
    /** Most tasks one host runs at once. @default 1000 */
    concurrency: z.number().int().positive().default(1000),
    /**
     * How long a host may go silent before its tasks are handed to another host. A host renews
     * its hold on each running task every third of this. @default 30000
     */
    leaseMs: z.number().int().min(500).default(30_000),
    /** Deliveries of one task message before it is treated as poison (crash loop). @default 10 */
    maxDeliver: z.number().int().min(1).default(10),
    /** Largest task message accepted, in bytes. @default 262144 */
    maxTaskBytes: z.number().int().positive().default(256 * 1024),
    /** Longest a graceful shutdown waits for in-flight effects. @default 10000 */
    drainTimeoutMs: z.number().int().min(0).default(10_000),
    /** Restarts of a task's actor (after it threw) allowed within `restartPeriodMs`. @default 3 */
    restartIntensity: z.number().int().min(0).default(3),
    /** Window of `restartIntensity`. @default 60000 */
    restartPeriodMs: z.number().int().positive().default(60_000),
    /** How often each host looks for approval requests past their deadline. @default 5000 */
    approvalSweepMs: z.number().int().positive().default(5_000),
    /** First restart delay; doubles with each restart in the window. @default 200 */
    restartBackoffMs: z.number().int().min(0).default(200),
  })
  .strict()
  .prefault({});

const breachPolicySchema = z.enum(['stop', 'escalate']);

const limitsSchema = z
  .object({
    /** Most steps (model calls) of one task. @default 8 */
    steps: z.number().int().positive().default(8),
    /** Wall-clock cap of one task from its start, across restarts. @default 90000 */
    wallClockMs: z.number().int().positive().default(90_000),
    /** Most USD one task may spend on model calls. @default none */
    usd: z.number().positive().optional(),
    /** Most model tokens (input, cache and output) of one task. @default none */
    tokens: z.number().int().positive().optional(),
    /** Consecutive steps that repeat an earlier step before the task is stopped. @default 3 */
    noProgress: z.number().int().positive().default(3),
    /**
     * What a breach does, per limit: `stop` ends the task with `limit_exceeded`; `escalate` parks
     * it and asks an approver for more. @default "stop" for every limit
     */
    onBreach: z
      .object({ usd: breachPolicySchema, tokens: breachPolicySchema, steps: breachPolicySchema, wallClock: breachPolicySchema, noProgress: breachPolicySchema })
      .partial()
      .strict()
      .default({}),
  })
  .strict()
  .prefault({});

const modelSchema = z
  .object({
    /**
     * `anthropic` calls the Anthropic API (needs `ANTHROPIC_API_KEY`); `simulator` starts the
     * bundled simulator. @default "anthropic" when ANTHROPIC_API_KEY is set, else "simulator"
     */
    provider: z.enum(['anthropic', 'simulator']).optional(),
    /** Base URL of the Messages API (`ANTHROPIC_BASE_URL`). */
    baseURL: z.string().url().optional(),
    /** Scenario file played by the bundled simulator. @default the support-desk scenario */
    scenario: z.string().optional(),
    /**
     * Which model serves which step role, and its `max_tokens`:
     * `{ "default": {"model","maxTokens"}, "roles": { "<role>": {"model","maxTokens"} } }`.
     * Agents may override roles. @default sonnet for everything, opus for `plan`, haiku for `format`
     */
    routing: z
      .object({
        default: z.object({ model: z.string().min(1), maxTokens: z.number().int().positive() }).strict().optional(),
        roles: z.record(z.string(), z.object({ model: z.string().min(1), maxTokens: z.number().int().positive() }).strict()).optional(),
      })
      .strict()
      .optional(),
    /** USD per million tokens, per model: `{ "<model>": {"input","output","cacheWrite","cacheRead"} }`, merged over the built-in table. */
    pricing: z
      .record(z.string(), z.object({ input: z.number().min(0), output: z.number().min(0), cacheWrite: z.number().min(0), cacheRead: z.number().min(0) }).strict())
      .optional(),
    /** Per-attempt timeout of a model call. @default 60000 */
    timeoutMs: z.number().int().positive().optional(),
    /** Attempts per model call, the first included. @default 4 */
    maxAttempts: z.number().int().min(1).optional(),
  })
  .strict()
  .prefault({});

const breakersSchema = z
  .object({
    /** Failures within `windowMs` that open a tool's or model's breaker. @default 5 */
    failureThreshold: z.number().int().positive().default(5),
    /** @default 30000 */
    windowMs: z.number().int().positive().default(30_000),
    /** How long an open breaker fails fast before one probe call is let through. @default 10000 */
    openMs: z.number().int().positive().default(10_000),
    /** How long a probe may take before another host may probe instead. @default 30000 */
    probeTimeoutMs: z.number().int().positive().default(30_000),
  })
  .strict()
  .prefault({});

const toolsSchema = z
  .object({
    /** Largest tool output (JSON bytes) recorded and shown to the model; larger is truncated to a preview. @default 65536 */
    maxOutputBytes: z.number().int().min(1024).max(512 * 1024).default(64 * 1024),
    /** Regular expressions (JavaScript syntax) whose matches in tool output are replaced by `[REDACTED]`. @default [] */
    redact: z
      .array(
        z.string().refine((source) => {
          try {
            new RegExp(source, 'g');
            return true;
          } catch {
            return false;
          }
        }, 'not a valid regular expression'),
      )
      .default([]),
    /** Replace the values of secret-looking environment variables (`*_KEY`, `*_TOKEN`, `*PASSWORD*`, ...) in tool output. @default true */
    redactEnv: z.boolean().default(true),
    /** Attempts of a tool call that failed in a way a retry can fix (timeouts, transient errors), the first included; never for irreversible tools. @default 3 */
    maxAttempts: z.number().int().min(1).max(10).default(3),
    /** First retry delay; doubles each attempt, with full jitter. @default 200 */
    retryBackoffMs: z.number().int().min(0).default(200),
    /** Tool calls one worker runs at once. @default 64 */
    workerConcurrency: z.number().int().positive().default(64),
    /** Sandboxes (bwrap) or threads kept warm per isolated tool in a worker. @default 1 */
    warmPoolSize: z.number().int().min(0).max(64).default(1),
  })
  .strict()
  .prefault({});

const metricsSchema = z
  .object({
    /** Port of each host's Prometheus endpoint (`GET /metrics`); unset: no endpoint. 0 picks a free port. */
    port: z.number().int().min(0).max(65535).optional(),
    /** Address it listens on. @default "127.0.0.1" */
    host: z.string().min(1).default('127.0.0.1'),
  })
  .strict()
  .prefault({});

const inspectSchema = z
  .object({
    /** Connect every agent and supervisor actor to the XState inspector (`troupe up --inspect`). @default false */
    enabled: z.boolean().default(false),
    /** Port of the inspector relay `troupe up` starts; 0 picks a free one. @default 0 */
    port: z.number().int().min(0).max(65535).default(0),
    /** An inspector relay already running elsewhere (`ws://...`): hosts send to it instead of starting one. */
    url: z.string().regex(/^wss?:\/\//, 'a ws:// or wss:// URL').optional(),
  })
  .strict()
  .prefault({});

const logSchema = z
  .object({
    /** pino level (`LOG_LEVEL`). @default "info" */
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
    /** Human-readable lines instead of JSON. @default true when stdout is a terminal */
    pretty: z.boolean().optional(),
  })
  .strict()
  .prefault({});

/** A person allowed to decide on escalations and approvals. */
const approverSchema = z
  .object({
    name: z.string().min(1),
    /** Public nkey (`U...`) that signs this approver's decisions (`troupe approver-key new`). */
    publicKey: z.string().regex(/^U[A-Z2-7]{55}$/, 'a public user nkey: "U" followed by 55 base32 characters'),
    /** Agents whose tasks this approver may decide on. @default every agent */
    agents: z.array(z.string()).optional(),
    /** Tools whose calls this approver may decide on (limit requests are not tool calls). @default every tool */
    tools: z.array(z.string()).optional(),
    /** Largest `amount` (a tool's `amount(args)`) of a call this approver may approve or edit to. @default no limit */
    maxAmount: z.number().positive().optional(),
    /**
     * Escalation tier. A request starts at tier 1; when its deadline passes and the agent's policy
     * says `onDeadline: "escalate"`, it moves to the next tier that has approvers. An approver may
     * decide on requests at their tier or below. @default 1
     */
    tier: z.number().int().min(1).default(1),
  })
  .strict();

/** Who a task acts for, and what that principal's tasks may call. */
const principalSchema = z
  .object({
    /** Tools this principal's tasks may call. @default every tool */
    tools: z.array(z.string()).optional(),
    /** Largest `amount` (a tool's `amount(args)`) of a call this principal's tasks may make. @default no limit */
    maxAmount: z.number().positive().optional(),
  })
  .strict();

export const configSchema = z
  .object({
    /** First token of every subject; stream and bucket names derive from it. @default "troupe" */
    prefix: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a lower-case subject token such as "troupe"')
      .default('troupe'),
    /** Modules that export agents (`defineAgent`), relative to the config file. @default [] */
    agents: z.array(z.string().min(1)).default([]),
    nats: natsSchema,
    embedded: embeddedSchema,
    streams: streamsSchema,
    host: hostSchema,
    limits: limitsSchema,
    model: modelSchema,
    breakers: breakersSchema,
    tools: toolsSchema,
    metrics: metricsSchema,
    /** `true` is short for `{ "enabled": true }`. */
    inspect: z.preprocess((v) => (typeof v === 'boolean' ? { enabled: v } : v), inspectSchema),
    /**
     * Principals a task may act for (`"principal"` in the task message) and what each may call:
     * the third gate before any tool call. Empty: no authorization gate (every task may call
     * every tool of its agent). @default {}
     */
    principals: z.record(z.string().regex(/^[A-Za-z0-9_.@-]{1,128}$/, 'letters, digits, "_", ".", "@" and "-", at most 128'), principalSchema).default({}),
    /** Principal of a task whose message names none; unset: such tasks are refused when `principals` is set. */
    defaultPrincipal: z.string().optional(),
    /** Who may decide on escalations. Decisions signed by anyone else are refused. @default [] */
    approvers: z.array(approverSchema).default([]),
    log: logSchema,
  })
  .strict()
  .refine((c) => c.defaultPrincipal === undefined || c.defaultPrincipal in c.principals, { path: ['defaultPrincipal'], message: 'must be one of the keys of "principals"' });

/** What a config file or object may contain (everything optional). */
export type TroupeConfigInput = z.input<typeof configSchema>;
/** Validated configuration with every default filled in. */
export type TroupeConfig = z.output<typeof configSchema>;
