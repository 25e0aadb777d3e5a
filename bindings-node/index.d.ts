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
export type KillSource = 'document' | 'flag' | 'local-all' | 'local-flag'

/** Stable error codes carried by `FlagrailError.code` (the same in Rust and Python). */
export type ErrorCode = 'INVALID_DOCUMENT' | 'SOURCE_UNREACHABLE' | 'INVALID_ARGUMENT'

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

/** Options of `Flags.fromFile`. */
export interface FileOptions {
  /** Watch the file and hot-reload it (default `true`). The watcher never keeps the process alive. */
  reload?: boolean
  /** Milliseconds between checks of the file (default 250). */
  pollInterval?: number
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
  /** The steps in order: conditions with the values they saw, rules, buckets, ramps, kills. */
  steps: Array<{ [key: string]: JsonValue }>
}

/** A local kill in `Status.local_kills`. */
export interface LocalKill {
  reason: string | null
  at: string
}

/** `Flags.status()` (cross-language field names). */
export interface Status {
  /** `static` or `file:<path>`. */
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
   * result of one document revision. An empty object for an unknown flag.
   */
  readonly payload: P
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
  /** A payload field, or `fallback` (default `undefined`) when the payload has no such field. */
  get<T = JsonValue>(key: string, fallback?: T): JsonValue | T | undefined
  /** The result as a plain object: `flag`, `variant`, `payload`, `reason`, `rule_id`, `bucket`, `revision`, `kill_source`. */
  toJSON(): {
    flag: string
    variant: string | null
    payload: P
    reason: Reason
    rule_id: string | null
    bucket: number | null
    revision: string
    kill_source: KillSource | null
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
   * @throws FlagrailError `SOURCE_UNREACHABLE` when the file cannot be read, `INVALID_DOCUMENT` (with `problems`) when it is invalid.
   */
  static fromFile(path: string | URL, options?: FileOptions): Flags
  /**
   * Parses and validates a flag document from JSON text (no reloading).
   * @throws FlagrailError `INVALID_DOCUMENT` with every problem.
   */
  static fromJson(text: string | Uint8Array): Flags
  /**
   * Validates a flag document given as a plain object (no reloading).
   * @throws FlagrailError `INVALID_DOCUMENT` with every problem; `INVALID_ARGUMENT` when the object has no JSON form.
   */
  static fromObject(document: object): Flags
  /** The revision of the live document. */
  readonly revision: string
  /**
   * The variant of `flag` for `context`. Never throws for a flag, a context value or the
   * document: an unknown flag gives `defaultVariant` (or `null`) with reason `FLAG_NOT_FOUND`,
   * and a context value of a type no condition can use is ignored for matching.
   */
  variant(flag: string, context?: Context | null, defaultVariant?: string | null, options?: EvaluateOptions): Variant
  /** A handle bound to one flag key: `const chat = flags.flag('support-bot'); chat.variant(user)`. */
  flag(key: string): Flag
  /** How `flag` is decided for `context`, step by step (each condition with the value it saw). */
  explain(flag: string, context?: Context | null, options?: EvaluateOptions): Explanation
  /** Source, live revision, its age, the last reload error, reload counters, watching, local kills. */
  status(): Status
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
  /** Stops watching the file; the last document keeps serving. Idempotent. */
  close(): void
}

/**
 * The bucket in `0..total` that `unit` falls into under `salt` (bucketing v1,
 * docs/bucketing.md): MurmurHash3 x86_32 of `salt ++ unit`, scaled to `total`. Identical in
 * Rust, Python and Node. Integers hash as their decimal text; pass integers beyond 2^53 as
 * bigint.
 * @param total Default 100000; an integer from 1 to 4294967295.
 * @throws FlagrailError `INVALID_ARGUMENT` for a unit that is not a string or an integer, or a total out of range.
 */
export declare function bucket(salt: string, unit: string | number | bigint, total?: number): number

/** The bucketing algorithm version this build implements (docs/bucketing.md). */
export declare const HASH_VERSION: number
