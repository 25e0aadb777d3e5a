// Type definitions of the flagrail package. Hand-written and checked against the real exports
// by __test__/typings.test.js: every `export declare` here must exist in index.js and index.mjs,
// and every export there must be declared here.

/** Why a variant was chosen. The strings are the same in Rust, Python and Node. */
export type Reason =
  | 'FLAG_NOT_FOUND'
  | 'KILLED'
  | 'GUARDRAIL'
  | 'STICKY'
  | 'BUDGET'
  | 'TARGETING_MATCH'
  | 'SPLIT'
  | 'DEFAULT'

/** Which kill switch is in force for a KILLED result. */
export type KillSource = 'document' | 'flag' | 'local-all' | 'local-flag' | 'guardrail' | 'budget'

/** Stable error codes carried by `FlagrailError.code` (the same in Rust and Python). */
export type ErrorCode =
  | 'INVALID_DOCUMENT'
  | 'SOURCE_UNREACHABLE'
  | 'SIGNATURE_INVALID'
  | 'NOT_REGULAR_FILE'
  | 'INVALID_ARGUMENT'
  | 'FLAG_NOT_FOUND'
  | 'ALL_ATTEMPTS_FAILED'
  | 'CALL_DEPTH_EXCEEDED'

/** Why an attempt failed (the same strings in Rust, Python and Node). */
export type ErrorKind =
  | 'timeout'
  | 'rate_limit'
  | 'server'
  | 'content_policy'
  | 'rejected'
  | 'other'
  | 'invalid_request'
  /** Python's sync `call` only: the step never started, every call thread was busy. */
  | 'threads_busy'

/**
 * A context attribute value:
 * - a string, or an integer (a safe-integer number or a bigint within 64 bits, hashed as its
 *   decimal text when it is a bucketing unit);
 * - a fractional number, a boolean, or an array of strings (groups, tags) for conditions;
 * - `null`/`undefined` for "missing".
 * Any other value (objects, functions, symbols, arrays with non-strings) is ignored for
 * matching and shown by `explain`; it never makes a read throw.
 */
export type AttributeValue = string | number | bigint | boolean | readonly string[] | null | undefined

/** The attributes of one request: user, session, conversation, plan, … */
export type Context = { readonly [attribute: string]: AttributeValue | unknown }

/** A JSON value as found in payloads and documents. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue }

/** Options of `Flags.variant` and `Flags.explain`. */
export interface EvaluateOptions {
  /**
   * Evaluate as of this instant instead of now (ramps read it): a `Date` or an RFC 3339 string
   * such as `"2026-11-21T09:00:00Z"`. For simulations and tests. An invalid value throws
   * `FlagrailError` with code `INVALID_ARGUMENT` (a programming error, not a read failure).
   */
  at?: Date | string
}

/**
 * The `exposures` option of every loader: exposure events and per-variant counts for plain reads
 * (`variant`, `variants`, `all`), off by default (docs/runtime.md, "Exposures of plain reads").
 * `true` takes the defaults. Values are checked by the core: out of range, or an unknown key,
 * throws `FlagrailError` with code `INVALID_ARGUMENT`.
 */
export interface ExposureOptions {
  /** One event per unit, flag and revision per this many milliseconds (default 3,600,000; 1 ms to 366 days). */
  windowMs?: number
  /**
   * The share of units whose reads send events, 0 to 1 (default 1), drawn by bucketing
   * `"<flag>/exposure"`: the same units in every process and language. Counts are never sampled.
   */
  sample?: number
  /**
   * Keys (unit, flag, revision) remembered for deduplication (default 100,000; 2 to 10,000,000).
   * At the bound the older half is forgotten: their next read sends its exposure again.
   */
  maxKeys?: number
}

/** Options of `Flags.fromJson`, `Flags.fromObject` and `Flags.forTests`. */
export interface LoadOptions {
  /** Exposures of plain reads (see `ExposureOptions`). */
  exposures?: ExposureOptions | boolean | null
}

/** Options of `Flags.fromFile`. */
export interface FileOptions {
  /** Watch the file and hot-reload it (default `true`). The watcher never keeps the process alive. */
  reload?: boolean
  /** Milliseconds between checks of the file (default 250). */
  pollInterval?: number
  /** Append every telemetry event to this JSON-lines file (see `Flags.writeEvents`). */
  events?: string | URL
  /** Exposures of plain reads (see `ExposureOptions`). */
  exposures?: ExposureOptions | boolean | null
  /**
   * The text of `flagrail.pub`: the document must carry a detached ed25519 signature by this
   * key in `<path>.sig` (written by `flagrail sign`). Every reload checks the pair: an unsigned
   * or wrongly signed version is rejected (`SIGNATURE_INVALID` in `status()` and the
   * `reload_rejected` event) and the live one stays; a document replaced before its `.sig`
   * goes live once both match.
   */
  verifyKey?: string
   * `redis://host:port/db` or `redis+cluster://host:port,host:port,…`: share budgets,
   * guardrails, metrics and sticky pins with every process (Node or Python) opened with the
   * same Redis (see `Flags.fleetMetrics` and docs/fleet.md). Never waits for Redis: an
   * unreachable one means local enforcement until it answers (`status().fleet.mode`).
   * Throws `REDIS_URL_INVALID` for a URL that is not a Redis URL.
   */
  redis?: string
}

/** Options of `Flags.fromUrl`. */
export interface UrlOptions {
  /** Milliseconds between polls (default 5000). */
  pollIntervalMs?: number
  /**
   * A file that keeps the last good document (written atomically): served at startup when the
   * server cannot be reached, while polling goes on.
   */
  cachePath?: string | URL
  /**
   * The text of `flagrail.pub`: documents must carry a detached ed25519 signature
   * (`<url>.sig`, written by `flagrail sign`) by this key, or they never go live
   * (`SIGNATURE_INVALID`).
   */
  verifyKey?: string
  /** Sent with every request (e.g. `{ Authorization: 'Bearer …' }`); never logged. */
  headers?: Record<string, string>
  /** A PEM file of CA certificates to trust instead of the bundled Mozilla roots. */
  caFile?: string | URL
  /**
   * Milliseconds a response (headers and body) may take once connected (default 10000): a
   * stalled server fails that poll. Connecting has its own 5 s bound.
   */
  timeoutMs?: number
  /** Milliseconds to wait for a first document when no cache can serve (default 10000). */
  startupTimeoutMs?: number
  /** Append every telemetry event to this JSON-lines file (see `Flags.writeEvents`). */
  events?: string | URL
  /** Exposures of plain reads (see `ExposureOptions`). */
  exposures?: ExposureOptions | boolean | null
  /**
   * `redis://host:port/db` or `redis+cluster://host:port,host:port,…`: share budgets,
   * guardrails, metrics and sticky pins with every process (Node or Python) opened with the
   * same Redis (see `Flags.fleetMetrics` and docs/fleet.md). Never waits for Redis: an
   * unreachable one means local enforcement until it answers (`status().fleet.mode`).
   * Throws `REDIS_URL_INVALID` for a URL that is not a Redis URL.
   */
  redis?: string
}

/** Options of `Flags.fromRedis`. */
export interface RedisOptions {
  /** The key that holds the document (default `'flagrail:document'`). */
  key?: string
  /** Milliseconds between safety-net reads when no pub/sub message came (default 30000). */
  pollIntervalMs?: number
  /**
   * A file that keeps the last good document (written atomically): served at startup when
   * Redis cannot be reached, while the poller waits for it.
   */
  cachePath?: string | URL
  /**
   * The text of `flagrail.pub`: documents must carry a detached ed25519 signature by this key
   * (`flagrail push` stores the `.sig` beside the document in Redis), or they never go live
   * (`SIGNATURE_INVALID`).
   */
  verifyKey?: string
  /** Milliseconds a Redis reply (and connecting) may take (default 1000). */
  timeoutMs?: number
  /**
   * Milliseconds to wait for Redis at startup (default 5000); then the cache, or an empty
   * document (revision `redis:waiting`), serves until Redis returns.
   */
  startupTimeoutMs?: number
  /** Append every telemetry event to this JSON-lines file (see `Flags.writeEvents`). */
  events?: string | URL
  /** Exposures of plain reads (see `ExposureOptions`). */
  exposures?: ExposureOptions | boolean | null
  /**
   * Share budgets, guardrails, metrics and sticky pins through this Redis (as in
   * `FileOptions.redis`; usually `url` again). The shared keys carry `key`'s hash tag.
   */
  redis?: string
}

/** The second argument of the function given to `Flags.call`. */
export interface CallOptions {
  /**
   * Aborts when this attempt's time is up (the variant's `timeout_ms`, bounded by the flag's
   * `max_total_ms`); pass it to the provider SDK or `fetch`. The call moves on at the timeout
   * whether or not the function honours it. Never aborts when the attempt has no time limit.
   */
  readonly signal: AbortSignal
  /** 1 for the first model call of this `call`, 2 for the first fallback that calls, … (1 for a shadow attempt). */
  readonly attempt: number
  /** This attempt's time limit in milliseconds, or `null`. */
  readonly timeoutMs: number | null
  /**
   * `true` for the attempt of a shadow variant (the variant's `isShadow` is `true` too): its
   * result is recorded for offline comparison and never served. `false` for served attempts.
   */
  readonly shadow: boolean
}

/** The options of `Flags.call` itself (the fourth argument). */
export interface CallControl {
  /**
   * The caller's own signal (a request's, `AbortSignal.timeout(ms)`): when it aborts, the
   * attempt in flight is aborted too (its `options.signal`), no further step runs, and the call
   * rejects with `signal.reason`. The attempt is recorded as `cancelled` (an outcome event that
   * feeds no metric or guardrail) and its budget reservation is given back at once. An already
   * aborted signal starts nothing.
   */
  signal?: AbortSignal | null
}

/** Usage of a model call: tokens and cost (all optional). */
export interface Usage {
  inputTokens?: number | null
  outputTokens?: number | null
  /** Overrides the cost computed from the tokens and the variant's `cost_per_1k_*` prices. */
  cost?: number | null
}

/** What a tracker reports: usage plus the latency the app measured. */
export interface TrackerReport extends Usage {
  /** Overrides the time measured since `tracker()` was called. */
  latencyMs?: number | null
}

/** One attempt of a call (cross-language fields, camelCased). */
export interface Attempt {
  /** The variant id that was called. */
  readonly variant: string
  readonly outcome: 'success' | 'error'
  /** Why it failed, or `null` on success. */
  readonly errorKind: ErrorKind | null
  /**
   * The failure as text, or `null`: `"Name: message"` of the thrown value, made by the core
   * (the same text as Python's), cut at 1,000 characters; a thrown plain object shows its
   * JSON text; `"timed out after N ms"` at the step's timeout.
   */
  readonly error: string | null
  /** Wall time of the attempt, measured by the core with a monotonic clock. */
  readonly latencyMs: number
  readonly inputTokens: number | null
  readonly outputTokens: number | null
  /** Given, or computed from the tokens and the variant's prices; `null` when unknown. */
  readonly cost: number | null
}

/** The result of `Flags.call`. */
export interface CallResult<T> {
  /** What the function returned (`Output.value` when it returned an `Output`); `null` when a non-AI variant served. */
  readonly value: T | null
  /** The variant that served (its own id and payload; the evaluation's reason, rule and bucket). */
  readonly variant: Variant
  /** Every model call made, in order. */
  readonly attempts: Attempt[]
  /** Whether a variant other than the assigned one served. */
  readonly fallbackUsed: boolean
  /** The run id, for `Flags.feedback`. */
  readonly runId: string
  /** The id of the variant the flag assigned (the first step of the chain). */
  readonly assigned: string
  /**
   * The id of the shadow variant whose attempt was started beside this call (it may still be
   * running: the call never waits for it), or `null` when none was drawn or the shadow's
   * `max_cost_per_hour` left no room.
   */
  readonly shadow: string | null
}

/** The error a `call` rejects with when every step failed and none serves without a model. */
export interface AllAttemptsFailedError extends FlagrailError {
  readonly code: 'ALL_ATTEMPTS_FAILED'
  /** Every attempt, in order. */
  readonly attempts: Attempt[]
  readonly runId: string
}

/** A model call the app makes itself (see `Flags.tracker`). Report it once. */
export interface Tracker {
  /** The variant being tracked. */
  readonly variant: Variant
  /** The run id, for `Flags.feedback`. */
  readonly runId: string
  /**
   * The call succeeded; returns `false` (recording nothing) when already reported.
   * @throws FlagrailError `INVALID_ARGUMENT` for a `latencyMs` or `cost` that is NaN, infinite
   *   or negative (decided by the core); nothing is recorded and the tracker can still report.
   */
  success(report?: TrackerReport): boolean
  /**
   * The call failed, with its error kind or the thrown error (classified like a failed `call`
   * attempt); returns `false` (recording nothing) when already reported.
   * @throws FlagrailError `INVALID_ARGUMENT` for an unknown kind string (the core's message,
   *   listing every kind), a `latencyMs` or `cost` that is NaN, infinite or negative, or a
   *   token count that is not a whole number from 0 to 2^53 - 1 (decided by the core).
   */
  error(kindOrError: ErrorKind | unknown, report?: TrackerReport): boolean
}

/** Options of `Flags.feedback`. */
export interface FeedbackOptions {
  /** User feedback, e.g. +1 / -1. */
  score?: number | null
  /** A quality score, e.g. from an evaluator, 0..1 (quality guardrails read it). */
  quality?: number | null
}

/**
 * A telemetry event (cross-language snake_case fields): `type` is `exposure`, `outcome`,
 * `feedback`, `guardrail_trip`, `guardrail_probe`, `guardrail_recover`, `budget_exhausted` or
 * `budget_restored`; events have `time` and `flag` (`null` for a document-wide budget), and the
 * others what fits their type (`variant`, `revision`, `run_id`, `rule_id`, `model`, `outcome`,
 * `error_kind`, `latency_ms`, tokens, `cost`, `unit`, `segment`, `shadow`, `output`,
 * `guardrail`, `metric`, `threshold`, `observed`, `budget`, `scope`, `limit`, `spent`, …).
 * Outcomes of a call with a shadow carry `output` (what the function returned, as JSON), and
 * the shadow's outcome has `shadow: true` and the served attempt's `run_id`. An `exposure` has
 * `source`: `'run'` (a call or tracker) or `'read'` (a plain read on a handle with the
 * `exposures` option; its `run_id` is `null`).
 */
export interface TelemetryEvent {
  readonly type:
    | 'exposure'
    | 'outcome'
    | 'feedback'
    | 'guardrail_trip'
    | 'guardrail_probe'
    | 'guardrail_recover'
    | 'budget_exhausted'
    | 'budget_restored'
  readonly time: string
  readonly flag: string | null
  readonly variant?: string | null
  readonly revision?: string
  readonly [field: string]: JsonValue | undefined
}

/**
 * The state of one budget (`Status.budgets`, `Metrics.$budgets`; cross-language field names).
 * A budget without `per` has `spent`, `reserved`, `remaining` and `exhausted`; a budget per
 * unit has `scopes`, `exhausted_scopes`, `evicted_scopes` and `spent_total`.
 */
export interface BudgetState {
  budget: string
  /** The flag that owns it, or `null` for a document-wide budget. */
  flag: string | null
  per: string | null
  measure: 'requests' | 'cost'
  limit: number
  /** The rolling window, e.g. `"1h"`. */
  window: string
  /** `skip_shadow` for the hourly cap of a flag's shadow (`max_cost_per_hour`). */
  action: 'kill' | 'serve' | 'skip_shadow'
  spent?: number
  reserved?: number
  remaining?: number
  exhausted?: boolean
  scopes?: number
  exhausted_scopes?: number
  evicted_scopes?: number
  spent_total?: number
}

/** Per flag, per variant: the aggregates of one variant (`requests`, `errors`, …). */
export type VariantMetrics = { [field: string]: JsonValue }

/**
 * `Flags.metrics()`: per flag, per variant: `requests`, `errors`, `error_rate`,
 * `errors_by_kind`, `served_static`, `latency_ms` (p50/p95/p99/mean/count), `tokens`, `cost`,
 * `quality`, `feedback`, `segments`, `shadow_requests`, and `guardrails` with each one's state
 * and reading; plus `$budgets` (every budget's state) when the document has budgets, and
 * `$exposures` (as `Status.exposures`) on a handle with the `exposures` option (flag keys never
 * start with `$`).
 */
export type Metrics = {
  readonly $budgets?: BudgetState[]
  readonly $exposures?: ExposureStatus
  [flag: string]: { [variant: string]: VariantMetrics } | BudgetState[] | ExposureStatus | undefined
}

/**
 * A shared store for the conversation pins of sticky flags (`Flags.usePinStore`), so that
 * every process of an app keeps a conversation on the same variant. Redis or any cache fits:
 *
 * ```js
 * flags.usePinStore({
 *   get: (key) => redis.get(key),
 *   set: (key, variant, ttlSeconds) => redis.set(key, variant, { PX: Math.round(ttlSeconds * 1000) }),
 *   delete: (key) => redis.del(key),
 * })
 * ```
 *
 * Keys are `flagrail/pin/<flag>/<conversation>` (the conversation is the context value of the
 * flag's `sticky.by` attribute, an integer in decimal); values are variant ids. The core
 * decides what to read and write. Methods may return Promises: `call` awaits them, while the
 * synchronous `variant()` and `explain()` use a pin only when `get` answers synchronously (a
 * Promise counts as a store miss for that evaluation, and as a store error in
 * `status().sticky_store`, and nothing is written then). A store that throws or rejects never
 * fails an evaluation or a call: the pin is ignored (not written) and the error counted.
 * Writes from `variant()` are not waited for; `call` waits for its write before calling the
 * model.
 */
export interface PinStore {
  /** The pinned variant id of `key`, or `null`/`undefined` when there is no live pin (UTF-8 bytes are accepted). */
  get(key: string): string | Uint8Array | null | undefined | PromiseLike<string | Uint8Array | null | undefined>
  /** Pins `key` to variant `value` for `ttlSeconds` (the flag's `sticky.ttl`). */
  set(key: string, value: string, ttlSeconds: number): void | PromiseLike<unknown>
  /** Removes the pin of `key` (a pin broken by a guardrail trip or a removed variant). */
  delete(key: string): void | PromiseLike<unknown>
}

/** `Status.sticky_store`: which pin store is in use and how it has failed. */
export interface StickyStoreStatus {
  kind: 'memory' | 'custom'
  /** Failed store calls (throws, rejections, unusable answers, Promises on synchronous reads). */
  errors: number
  /** The last failure, as `"<method>: <description>"`, or `null`. */
  last_error: string | null
}

/** Options of `Flags.kill`. */
export interface KillOptions {
  /** Why, for `status()` and the runbook. */
  reason?: string
}

/** One problem of a rejected flag document. */
export interface Problem {
  /** Where, e.g. `flags.support-bot.rules[2].when.op` (`""` for the whole document). */
  readonly path: string
  /** What kind of problem, e.g. `UNKNOWN_OPERATOR` (stable across languages). */
  readonly code: string
  /** What is wrong, for a person. */
  readonly message: string
}

/** `Flags.explain()`: the decision plus every step that led to it (cross-language field names). */
export interface Explanation {
  flag: string
  variant: string | null
  payload: JsonValue | null
  reason: Reason
  rule_id: string | null
  bucket: number | null
  revision: string
  kill_source: KillSource | null
  /** The id of the guardrail whose trip decided (reason `GUARDRAIL`, or `KILLED` by a guardrail), or `null`. */
  guardrail: string | null
  /** For reason `GUARDRAIL`: the variant the guardrail took out, or `null`. */
  replaced_variant: string | null
  /** The budget that decided (reason `BUDGET`, or `KILLED` by a budget), or `null`. */
  budget: string | null
  /** The shadow variant drawn, or `null`. */
  shadow: string | null
  /** The steps in order: conditions with the values they saw, sticky pins, budgets, rules, buckets, ramps, kills, the shadow draw. */
  steps: Array<{ [key: string]: JsonValue }>
}

/** A local kill in `Status.local_kills`. */
export interface LocalKill {
  reason: string | null
  at: string
}

/** `Flags.status()` (cross-language field names). */
export interface Status {
  /** `static`, `file:<path>` or `url:<url>` (credentials hidden). */
  source: string
  revision: string
  /** When the live document was loaded (RFC 3339). */
  loaded_at: string
  age_seconds: number
  last_check: string | null
  /** The last rejected reload since the live document was loaded, if any. */
  last_error: { at: string; code: ErrorCode; message: string; problems: Problem[] } | null
  reloads: number
  rejected: number
  watching: boolean
  local_kills: { all: LocalKill | null; flags: { [flag: string]: LocalKill } }
  /** Guardrails tripped in this process (tripped, or half-open and probing). */
  guardrails: GuardrailTrip[]
  /** The ramps an autopilot governs, where each stands (docs/autopilot.md). */
  autopilot: AutopilotRamp[]
  /** Every budget of the live document: document-wide ones, each flag's, then shadow caps. */
  budgets: BudgetState[]
  /** Conversation pins held in the in-memory store. */
  sticky_pins: number
  /** The pin store in use (see `Flags.usePinStore`). */
  sticky_store: StickyStoreStatus
  /**
   * The state of the URL poller (`Flags.fromUrl`) or of the Redis source (`Flags.fromRedis`,
   * `kind: 'redis'`); `null` for file and static sources.
   */
  remote: RemoteStatus | RedisRemoteStatus | null
  /** Shared fleet state (`redis` option); null without it. */
  fleet: FleetStatus | null
  /** Exposures of plain reads (`exposures` option); null without it. */
  exposures: ExposureStatus | null
}

/** `Status.exposures`: settings and counters of the exposures of plain reads. */
export interface ExposureStatus {
  window_ms: number
  sample: number
  max_keys: number
  /** Reads of a known flag since exposures were turned on. */
  reads: number
  /** `exposure` events (`source: 'read'`) sent. */
  events: number
  /** Reads not sent because their key was sent within the window. */
  duplicates: number
  /** Reads of units outside the sample. */
  not_sampled: number
  /** Reads whose context had no unit (the flag's `bucket_by`). */
  no_unit: number
  /** Keys remembered now. */
  remembered: number
  /** Keys forgotten at `maxKeys` before their window ended. */
  forgotten: number
  /** Every read, per flag and variant id (not sampled, not deduplicated). */
  flags: { [flag: string]: { [variant: string]: number } }
}

/**
 * `Status.fleet`: the connection to the fleet's Redis. `mode` is `shared` while Redis answers
 * and `local` while it does not (budgets enforced from this process's lease, then
 * `limit / fleet_size`; docs/fleet.md).
 */
export interface FleetStatus {
  redis: string
  process: string
  connected: boolean
  mode: 'shared' | 'local'
  since: string | null
  last_error: string | null
  disconnects: number
  fleet_size: number
  leased_scopes: number
  pending_spend: number
  denied_for_lease: number
  pending_pin_writes: number
  dropped_pin_writes: number
  flushes: number
  fleet_read_at: string | null
  now: string
}

/** `Status.remote`: what the URL source knows (timestamps are RFC 3339). */
export interface RemoteStatus {
  url: string
  etag: string | null
  last_modified: string | null
  /** The last poll that got a document or a 304. */
  last_success: string | null
  last_attempt: string | null
  /** Failed polls since the last success (0 when healthy); drives the backoff. */
  consecutive_failures: number
  /** Seconds since the live document was last confirmed by the server (or loaded from the cache). */
  stale_seconds: number | null
  /** The live document came from `cachePath` and the server has not answered since. */
  served_from_cache: boolean
  cache_path: string | null
  /** A verify key is configured: only signed documents go live. */
  signed: boolean
  poll_interval_seconds: number
  polls: number
  not_modified: number
  documents: number
  last_error: {
    at: string
    code: ErrorCode
    /** `connect`, `timeout`, `http_status`, `too_large`, `truncated`, `redirects`, `tls`, `io`, `invalid_document`, `signature` or `cache_write`. */
    kind: string
    message: string
  } | null
}

/** `Status.remote` of `Flags.fromRedis` (timestamps are RFC 3339). */
export interface RedisRemoteStatus {
  kind: 'redis'
  /** The Redis URL without its password. */
  url: string
  key: string
  /** The pub/sub channel every push announces itself on. */
  channel: string
  /** The last read reached Redis. */
  connected: boolean
  /** Subscribed to the channel (pushes arrive at once); otherwise only the poll and reconnects read. */
  subscribed: boolean
  /** The live document came from Redis (not the cache or the empty `redis:waiting` stand-in). */
  document_loaded: boolean
  /** Redis answered but holds no document at the key (nothing pushed yet, or deleted). */
  key_missing: boolean
  served_from_cache: boolean
  /** The push counter of the live document (bumped by every push, kill and unkill). */
  redis_revision: number | null
  last_success: string | null
  last_attempt: string | null
  consecutive_failures: number
  /** Seconds since the live document was last confirmed by Redis (or loaded from the cache). */
  stale_seconds: number | null
  cache_path: string | null
  /** A verify key is configured: only signed documents go live. */
  signed: boolean
  poll_interval_seconds: number
  reads: number
  /** Pub/sub messages received. */
  messages: number
  documents: number
  /** Successful (re)subscriptions. */
  subscriptions: number
  last_error: {
    at: string
    code: ErrorCode
    /** `connect`, `command`, `invalid_document`, `signature` or `cache_write`. */
    kind: string
    message: string
  } | null
}

/** A ramp in `Status.autopilot` (and `explain`'s ramp step, without flag, rule and candidate). */
export interface AutopilotRamp {
  flag: string
  rule_id: string
  /** The ramped variant. */
  candidate: string
  /** `governed`: held at its step by the autopilot; `paused_by_hand`: halted, or paused by a person. */
  state: 'not_started' | 'governed' | 'paused_by_hand' | 'rolled_back' | 'complete' | 'scheduled'
  step: number | null
  percent: number
  /** When the live step began (RFC 3339); set `paused_at` to it to hand a paused ramp back. */
  step_began: string | null
  held_ms: number | null
  control: string
  min_hold_ms: number | null
  max_hold_ms: number | null
  /** The last decision the autopilot wrote into this ramp (the ramp's `last_decision`), or null. */
  last_decision: AutopilotDecision | null
}

/** The autopilot's last written decision on a ramp, with its evidence in brief (docs/autopilot.md). */
export interface AutopilotDecision {
  decision: 'promote' | 'hold' | 'roll_back' | 'halt' | 'revert'
  /** e.g. `proven_within_limits`, `proven_regression`, `max_hold_without_proof`. */
  reason: string
  /** When it was decided (RFC 3339). */
  at: string
  step: number
  percent: number
  /** Who wrote it (`flagrail autopilot --actor`). */
  actor: string | null
  /** Units per arm in the step at the decision. */
  samples: { control: number; candidate: number }
  metrics: Array<{
    metric: string
    status: 'within_limit' | 'regression' | 'undecided' | 'insufficient_data'
    /** Candidate − control (difference) or candidate / control (ratio). */
    estimate: number | null
    interval: [number, number] | null
    limit: number
  }>
}

/** A tripped guardrail in `Status.guardrails`. */
export interface GuardrailTrip {
  flag: string
  guardrail: string
  /** The variant it watches (and reroutes or kills). */
  variant: string
  action: 'kill' | 'fallback' | 'halt' | 'rollback'
  since: string
  state: 'tripped' | 'half_open'
  /** When the half-open probe starts. */
  probe_from: string
  probe_percent: number
}

/**
 * An error from flagrail. Loading and construction throw it; reading a flag never does.
 * `code` is stable across Rust, Python and Node; for `INVALID_DOCUMENT`, `problems` lists every
 * problem with its path (and the message lists them too).
 */
export declare class FlagrailError extends Error {
  /** Not constructed by users; thrown by flagrail. */
  constructor(code: ErrorCode, message: string, problems?: readonly Problem[])
  readonly name: 'FlagrailError'
  /** The stable error code. */
  readonly code: ErrorCode
  /** Every problem of a rejected document; empty for other errors. */
  readonly problems: readonly Problem[]
}

/**
 * "Not good enough": throw it from the function given to `Flags.call` to fail the attempt
 * with the kind `rejected` and move on to the next step of the chain.
 */
export declare class Reject extends Error {
  constructor(message?: string, options?: { cause?: unknown })
  readonly name: 'Reject'
  /** The error kind the attempt is recorded with. */
  readonly errorKind: 'rejected'
}

/**
 * Return it from the function given to `Flags.call` to report usage:
 * `return new Output(text, { inputTokens, outputTokens, cost })`. The call's value is `value`.
 * @throws FlagrailError `INVALID_ARGUMENT` for token counts that are not whole numbers from 0
 *   to 2^53 - 1 and for a `cost` that is NaN, infinite or negative (decided by the core). Thrown inside the
 *   function given to `call`, it fails that attempt like any error.
 */
export declare class Output<T = unknown> {
  constructor(value: T, usage?: Usage)
  /** The result value. */
  readonly value: T
  readonly inputTokens: number | null
  readonly outputTokens: number | null
  /** The cost (same unit as the variant's prices), or `null` to compute it from the tokens. */
  readonly cost: number | null
}

/**
 * The variant of a flag that one context gets, and why. Returned by `variant()`; not
 * constructed by users. `JSON.stringify(v)` gives the cross-language fields (as Python's
 * `to_dict()`).
 */
export declare class Variant<P = { readonly [key: string]: JsonValue }> {
  private constructor()
  /** The flag key that was evaluated. */
  readonly flag: string
  /** The variant id; the caller's default (or `null`) for an unknown flag (`FLAG_NOT_FOUND`). */
  readonly id: string | null
  /**
   * The variant's payload (model, prompt, parameters, …), deeply frozen and shared by every
   * result of one document revision. `null` for an unknown flag (`FLAG_NOT_FOUND`), as in
   * Python, the CLI and docs/flag-document.md.
   */
  readonly payload: P | null
  /** Why this variant was chosen. */
  readonly reason: Reason
  /** The id of the rule that decided, or `null` (default, kill, unknown flag). */
  readonly ruleId: string | null
  /** The unit's bucket when a split or ramp decided (over the split's total weight, or 100000 for percentages); otherwise `null`. */
  readonly bucket: number | null
  /** The revision of the flag document that made this decision. */
  readonly revision: string
  /** Which kill switch is in force when `reason` is `KILLED`; otherwise `null`. */
  readonly killSource: KillSource | null
  /**
   * The id of the shadow variant drawn for this decision (the flag's `shadow`, for a share of
   * units), which `call` runs beside the served one; otherwise `null`. Never for `KILLED` or
   * `BUDGET` results.
   */
  readonly shadow: string | null
  /** The id of the budget that decided (reason `BUDGET`, or `KILLED` with kill source `budget`); otherwise `null`. */
  readonly budget: string | null
  /** `true` only for the Variant given to the function of a shadow attempt in `call`. */
  readonly isShadow: boolean
  /** A payload field, or `fallback` (default `undefined`) when the payload has no such field. */
  get<T = JsonValue>(key: string, fallback?: T): JsonValue | T | undefined
  /**
   * A response-cache key segmented by flag, variant and variant revision:
   * `flagrail:v1:<flag>:<variant>:<payload hash>[:<parts hash>]` (identical in Rust, Python
   * and Node; `:` and `%` in ids are escaped). Editing the variant's payload changes its keys.
   * Parts are strings or integers (safe-integer numbers or bigints within 64 bits; an integer
   * is its decimal text, so `42` and `"42"` give the same key).
   * @throws TypeError with `code` `INVALID_ARGUMENT` for a part of another type (a fractional number, a boolean, …).
   * @throws FlagrailError `FLAG_NOT_FOUND` for the result of an unknown flag.
   */
  cacheKey(...parts: Array<string | number | bigint>): string
  /** The result as a plain object: `flag`, `variant`, `payload`, `reason`, `rule_id`, `bucket`, `revision`, `kill_source`, `shadow`, `budget`. */
  toJSON(): {
    flag: string
    variant: string | null
    payload: P | null
    reason: Reason
    rule_id: string | null
    bucket: number | null
    revision: string
    kill_source: KillSource | null
    shadow: string | null
    budget: string | null
  }
}

/** One flag of a `Flags`, bound by key (see `Flags.flag`). The flag need not exist (yet). */
export declare class Flag {
  private constructor()
  /** The flag key. */
  readonly key: string
  /** The variant of this flag for `context` (see `Flags.variant`). Never throws for a flag or context value. */
  variant(context?: Context | null, defaultVariant?: string | null, options?: EvaluateOptions): Variant
  /** How this flag is decided for `context` (see `Flags.explain`). */
  explain(context?: Context | null, options?: EvaluateOptions): Explanation
}

/**
 * The live feature flags of a process. Create one per document at startup and share it.
 * A file source is reloaded in the background (a new document is validated off the request
 * path and swapped in atomically; an invalid one never replaces the live one) without keeping
 * the event loop alive. Safe to use from worker threads (each loads its own). Reading a flag
 * never throws.
 */
export declare class Flags {
  private constructor()
  /**
   * Loads a flag document from a JSON file and, unless `reload` is false, watches it: a changed
   * file goes live within one poll interval.
   * @throws FlagrailError `SOURCE_UNREACHABLE` when the file cannot be read, `INVALID_DOCUMENT` (with `problems`) when it is invalid, `SIGNATURE_INVALID` when `verifyKey` is given and `<path>.sig` does not match, `INVALID_ARGUMENT` for a bad `verifyKey`.
   */
  static fromFile(path: string | URL, options?: FileOptions): Flags
  /**
   * Loads a flag document from an HTTP(S) URL and polls it in the background with conditional
   * GETs (an unchanged document costs a 304 and no parse). A failed poll, or a bad, truncated,
   * oversized or unsigned document, never replaces the live one; failures back off with full
   * jitter (up to 30 s, `Retry-After` honoured). `status().remote` has the URL, ETag, last
   * success and attempt, consecutive failures, staleness and the last error with its code.
   * The poller never keeps the process alive, runs per worker thread, and stops with `close()`.
   *
   * Blocks until the first document is fetched; if that fails and `cachePath` holds a valid
   * copy, the copy serves (`status().remote.served_from_cache`), else it retries for
   * `startupTimeoutMs` and throws.
   * @throws FlagrailError `SOURCE_UNREACHABLE`, `SIGNATURE_INVALID`, `INVALID_DOCUMENT` or `INVALID_ARGUMENT`.
   */
  static fromUrl(url: string | URL, options?: UrlOptions): Flags
  /**
   * Loads a flag document from a Redis key and follows every push at once.
   *
   * The document lives at `key`; `flagrail push` (and `flagrail kill` / `unkill` with
   * `--redis`) writes it atomically and announces the new revision on the document's pub/sub
   * channel. Every process subscribed to it re-reads the key as soon as the message arrives,
   * right after every (re)subscription, and every `pollIntervalMs` as a safety net (pub/sub can
   * drop messages). A new document is checked (signature, when `verifyKey` is given),
   * validated and swapped in atomically; a bad or unsigned one never replaces the live one.
   * `url` is `redis://host:port[/db]` or, for a Redis Cluster,
   * `redis+cluster://host1:port1,host2:port2,...`: every key of one document shares one hash
   * tag, so each write stays in one slot. `status().remote` says `kind: 'redis'`, whether the
   * process is connected and subscribed, the push counter (`redis_revision`), last success,
   * staleness and the last error with its code. The poller reconnects with backoff, never
   * keeps the process alive, and stops with `close()`.
   *
   * Startup never throws because Redis is down: after `startupTimeoutMs` the cache serves, or
   * else an empty document (revision `redis:waiting`: every flag answers the caller's
   * default) until Redis returns and the real document loads. An empty key is treated the
   * same way.
   * @throws FlagrailError `INVALID_DOCUMENT` or `SIGNATURE_INVALID` when Redis holds an unusable document and no cache serves; `INVALID_ARGUMENT` for a bad URL, key or option.
   */
  static fromRedis(url: string | URL, options?: RedisOptions): Flags
  /**
   * Parses and validates a flag document from JSON text, or from its UTF-8 bytes (a `Buffer` or
   * `Uint8Array`, read by the core: invalid UTF-8 is an error, as in the CLI and Python). No
   * reloading.
   * @throws FlagrailError `INVALID_DOCUMENT` with every problem.
   */
  static fromJson(text: string | Uint8Array, options?: LoadOptions): Flags
  /**
   * Validates a flag document given as a plain object (no reloading).
   * @throws FlagrailError `INVALID_DOCUMENT` with every problem; `INVALID_ARGUMENT` when the object has no JSON form.
   */
  static fromObject(document: object, options?: LoadOptions): Flags
  /**
   * Flags for a test from a short mapping: `Flags.forTests({ 'support-bot': 'v2.2' })`. Each
   * entry is one flag: a variant id (the flag's only variant, served to everyone), an object of
   * variant ids to payloads with an optional `default` (the first variant otherwise), or a flag
   * written in full (it has `variants`). The document's revision is `"for-tests"`.
   * @throws FlagrailError `INVALID_ARGUMENT` when the mapping is not of that shape; `INVALID_DOCUMENT` when the document it makes is invalid.
   */
  static forTests(mapping: Record<string, string | Record<string, unknown>>, options?: LoadOptions): Flags
  /**
   * Runs `fn` with `variant` served for `flag` and returns what `fn` returns (its promise, for
   * an async `fn`): `await flags.override('support-bot', 'v2.2', async () => { ... })`.
   *
   * Inside the scope `variant()`, `Flag.variant()` and `call()` of that flag serve the variant
   * with reason `DEFAULT` whatever the context (kills, rules, pins and budgets do not apply; a
   * call's fallbacks still do). The scope is an `AsyncLocalStorage`: it covers everything `fn`
   * does, awaits and timers included, and nothing else, so concurrent tests or requests never
   * see each other's overrides. Scopes nest (the innermost wins) and end when `fn` returns,
   * throws or its promise settles. `explain` is not affected.
   * @throws FlagrailError `INVALID_ARGUMENT` (before `fn` runs) when the live document has no such flag or the flag no such variant.
   */
  override<T>(flag: string, variant: string, fn: () => T): T
  /** The revision of the live document. */
  readonly revision: string
  /**
   * The variant of `flag` for `context`. Never throws for a flag, a context value or the
   * document: an unknown flag gives `defaultVariant` (or `null`) with reason `FLAG_NOT_FOUND`,
   * and a context value of a type no condition can use is ignored for matching.
   */
  variant(flag: string, context?: Context | null, defaultVariant?: string | null, options?: EvaluateOptions): Variant
  /**
   * Several flags for one context, the context read once: `{ [key]: Variant }` in the order of
   * `keys`. Each result is the one `variant(key, context)` returns, and every flag is decided on
   * the same document revision. Only the attributes the requested flags use are read from
   * `context`. A key that names no flag gives a `FLAG_NOT_FOUND` result whose `id` is `null`; a
   * repeated key appears once.
   * @throws FlagrailError `INVALID_ARGUMENT` when `keys` is a string or holds a non-string.
   */
  variants(context: Context | null | undefined, keys: Iterable<string>, options?: EvaluateOptions): Record<string, Variant>
  /** Every flag of the live document for one context, the context read once, in document order (see `variants`). */
  all(context?: Context | null, options?: EvaluateOptions): Record<string, Variant>
  /** A handle bound to one flag key: `const chat = flags.flag('support-bot'); chat.variant(user)`. */
  flag(key: string): Flag
  /** How `flag` is decided for `context`, step by step (each condition with the value it saw). */
  explain(flag: string, context?: Context | null, options?: EvaluateOptions): Explanation
  /** Source, live revision, its age, the last reload error, reload counters, watching, local kills, budgets, pins. */
  status(): Status
  /**
   * Keeps the pins of sticky conversations in `store` (shared between processes) instead of
   * this handle's in-memory store; `null` goes back to the in-memory store. See `PinStore`.
   * @throws FlagrailError `INVALID_ARGUMENT` when `store` lacks a `get`, `set` or `delete` method.
   */
  usePinStore(store: PinStore | null): void
  /**
   * Kills `flag` (every flag without one) in this process only: the next evaluation serves the
   * flag's kill variant with reason `KILLED`. The document is not changed.
   */
  kill(flag?: string | null, options?: KillOptions): void
  kill(options: KillOptions): void
  /** Lifts the local kill of `flag` (every local kill without one). A kill written in the document stays until a new document lifts it. */
  unkill(flag?: string | null): void
  /**
   * Checks a file source now and reloads it if it changed; returns whether a new document went
   * live (`false` for static sources). Useful with `reload: false`.
   * @throws FlagrailError `SOURCE_UNREACHABLE` or `INVALID_DOCUMENT` (the live document stays).
   */
  reloadIfChanged(): boolean
  /** Stops watching the file (or polling the URL); the last document keeps serving. Idempotent. */
  close(): void
  /**
   * Calls `fn` through the flag's fallback chain: the assigned variant with its `timeout_ms`,
   * then the flag's `fallback` list in order (at most `max_attempts` model calls within
   * `max_total_ms`). A throw, a rejection, a timeout or a `Reject` moves to the next step; a
   * non-AI variant (`"ai": false`) serves without calling `fn` (the result's `value` is then
   * `null`). Every attempt is recorded (metrics, guardrails, budgets, events). Return an
   * `Output` to report tokens and cost.
   *
   * Budgets are checked and the assigned variant's estimated cost reserved before `fn` runs.
   * When the flag draws a shadow for this unit, `fn` is also called with the shadow variant
   * (`variant.isShadow`, `options.shadow` true) on a later turn of the event loop, once the
   * call has settled: even synchronous work in the shadow never delays the served answer; the
   * call never waits for it, and whatever it returns or throws is only recorded
   * (`shadow: true` outcome with the same `run_id`). For a sticky flag with a `PinStore`, the
   * pin is read (awaited) before and written before `fn` runs. Any thrown value is an outcome
   * (classified, shown as text), even one that cannot be read (a revoked Proxy).
   * @throws FlagrailError `FLAG_NOT_FOUND` (rejects) for an unknown flag;
   *   `ALL_ATTEMPTS_FAILED` (an `AllAttemptsFailedError`, with `attempts` and `runId`) when
   *   every step failed and none serves without a model; `INVALID_ARGUMENT` for a `signal`
   *   that is not an AbortSignal; `CALL_DEPTH_EXCEEDED` for a call made synchronously (before
   *   its first `await`) from inside the `fn` of more than 100 enclosing calls, the core's limit,
   *   the same as Python's (a programming error: nothing is recorded for it, and every
   *   enclosing call rejects with it, its attempt recorded as cancelled). Rejects with
   *   `signal.reason` when `control.signal` aborts.
   */
  call<T>(
    flag: string,
    context: Context | null | undefined,
    fn: (variant: Variant, options: CallOptions) => T | Output<T> | PromiseLike<T | Output<T>>,
    control?: CallControl,
  ): Promise<CallResult<T>>
  /**
   * A tracker for a model call the app makes itself with a variant it already has from
   * `variant()`. `context` supplies the unit and `segment` labels.
   * @throws FlagrailError `FLAG_NOT_FOUND` for a variant of an unknown flag, `INVALID_ARGUMENT`
   *   for a variant id the flag does not have.
   */
  tracker(variant: Variant, context?: Context | null): Tracker
  /**
   * Attaches user feedback and/or a quality score to the run `runId` (from a call result or a
   * tracker). Returns `false` when the run is unknown (never seen, or too old).
   */
  feedback(runId: string, options?: FeedbackOptions): boolean
  /** In-memory aggregates per flag and variant, with each guardrail's state. */
  metrics(): Metrics
  /** The metrics in the Prometheus text exposition format (`flagrail_requests_total{flag=…,variant=…} N`, …). */
  metricsText(): string
  /**
   * The whole fleet's aggregates (a `Flags` opened with `redis`): every process's `metrics()`
   * added up (counters summed, rates and means recomputed, latency quantiles the largest of
   * any process), plus `$fleet`: `processes`, the fleet's guardrail states, `read_at`. Read
   * by a background thread every second; no round trip. Throws `INVALID_ARGUMENT` without
   * `redis`.
   */
  fleetMetrics(): Record<string, unknown>
  /** `fleetMetrics()` in the Prometheus text format (`flagrail_fleet_*` series). */
  fleetMetricsText(): string
  /**
   * Calls `listener` with every telemetry event of this `Flags`, synchronously before the call
   * that produced it returns. A listener that throws becomes a process warning. Returns a
   * function that removes the listener.
   */
  onEvent(listener: (event: TelemetryEvent) => void): () => void
  /**
   * Appends every future event to a JSON-lines file.
   * @throws FlagrailError `SOURCE_UNREACHABLE` when the file cannot be opened.
   */
  writeEvents(path: string | URL): void
  /**
   * Replaces unit ids in events by `h:` + HMAC-SHA-256(key, unit) (16 bytes, hex), so that no
   * raw id leaves the process; `null` sends them as they are.
   */
  hashUnits(key: string | Uint8Array | null): void
}

/**
 * The bucket in `0..total` that `unit` falls into under `salt` (bucketing v1,
 * docs/bucketing.md): MurmurHash3 x86_32 of `salt ++ unit`, scaled to `total`. Identical in
 * Rust, Python and Node. Integers hash as their decimal text; pass integers beyond 2^53 as
 * bigint.
 * @param total Default 100000; an integer from 1 to 4294967295.
 * @throws FlagrailError `INVALID_ARGUMENT` for a unit that is not a string or an integer, a total out of range, or a
 * salt or unit with a lone surrogate (it has no UTF-8 form, docs/bucketing.md §2).
 */
export declare function bucket(salt: string, unit: string | number | bigint, total?: number): number

/** One `(from, to)` pair of a review: units served `from` by the old document and `to` by the new. */
export interface ReviewMove {
  from: string
  to: string
  units: number
  share: number
}

/** The change review of `diff`: the same JSON as `flagrail diff --json`. */
export interface Review {
  old_revision: string
  new_revision: string
  /** The review instant, RFC 3339. */
  at: string
  /** Units evaluated. */
  units: number
  /** Structural changes, flags in key order, then the document's (`flag` null: segments, document kill). */
  changes: Array<{ flag: string | null; kind: string; item: string | null; detail: string | null }>
  /** Per flag that changed or whose units move, in key order. */
  flags: Array<{
    flag: string
    moved: number
    moved_share: number
    moves: ReviewMove[]
    segments: Array<{ segment: string; units: number; moved: number; moves: ReviewMove[] }>
    ramp_steps: Array<{ at: string; rule: string; percent: number; moved: number; moves: ReviewMove[] }>
  }>
  /** Changes that need an explicit approval. */
  dangers: Array<{ code: 'RAMP_JUMP' | 'KILL_CALLS_MODEL' | 'REBUCKET' | 'REMOVED_VARIANT_SERVED'; flag: string; message: string }>
  /** Whether `dangers` is not empty. */
  dangerous: boolean
}

/** Options of `diff`. */
export interface DiffOptions {
  /** Synthetic units (default 10000, at most 1000000), drawn from both documents' attributes with `seed`. */
  users?: number
  /** The synthetic population's seed (default 1): the same documents and seed give the same units. */
  seed?: number
  /** Evaluate these contexts instead of synthetic units (excludes `users` and `seed`). */
  population?: Iterable<Record<string, unknown>>
  /** The review instant (default now). */
  at?: Date | string
}

/**
 * Reviews the change from `oldDocument` to `newDocument` before it goes live, as
 * `flagrail diff` does: both documents are evaluated by the core over a population at `at`
 * and at each later step of the new document's ramps. The result shows what changed per flag
 * and which share of units moves from which variant to which, overall, per segment and along
 * ramps, with the dangerous changes (docs/ecosystem.md, "Change review").
 * @throws FlagrailError `INVALID_DOCUMENT` for a rejected document (each problem's path starts
 * with `old.` or `new.`); `INVALID_ARGUMENT` for `users` or `seed` out of range or given with
 * `population`, or a population that is empty, too large or holds a non-object.
 */
export declare function diff(oldDocument: object, newDocument: object, options?: DiffOptions): Review

/** Where reload log lines go: anything with `info`, `warn` and `error` methods (`console`, pino, winston). */
export interface Logger {
  info(message: string): unknown
  warn(message: string): unknown
  error(message: string): unknown
}

/**
 * Sends the log lines of reloads (file watcher, URL poller) to `logger`, as Python logs them to
 * its `flagrail` logger, with the same levels and text: a refused document is an `error`, an
 * unreadable source a `warning`, a new document `info`. They are written as they happen, not at
 * the next call. The default writes `error` and `warn` to stderr (console) and `info` with
 * NODE_DEBUG=flagrail; `null` silences them, `undefined` restores the default.
 * @throws FlagrailError `INVALID_ARGUMENT` when `logger` lacks one of the three methods.
 */
export declare function setLogger(logger: Logger | null | undefined): void

/** The bucketing algorithm version this build implements (docs/bucketing.md). */
export declare const HASH_VERSION: number
