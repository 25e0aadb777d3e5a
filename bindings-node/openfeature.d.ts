import type {
  EvaluationContext,
  JsonValue,
  OpenFeatureEventEmitter,
  Provider,
  ResolutionDetails,
  TrackingEventDetails,
} from '@openfeature/server-sdk'

import type { Flags } from './index'

/** The provider's name (`metadata.name`, and `feature_flag.provider.name` in spans). */
export declare const PROVIDER_NAME: 'flagrail'

export interface FlagrailProviderOptions {
  /**
   * For a flag key, the payload field that its string, boolean and number resolutions return
   * (`{ 'support-bot': 'model' }`). Without an entry, string resolution returns the variant id
   * and boolean / number resolution the payload itself.
   */
  fields?: Record<string, string>
  /** The context attribute the targeting key is passed as (default `user_id`, flagrail's default `bucket_by`). */
  targetingKeyAttribute?: string
  /** How often `flags.status()` is read for reload and staleness events (ms, default 1000; an unref'd timer). */
  statusIntervalMs?: number
}

/**
 * An OpenFeature server provider over a flagrail `Flags`. Object resolution returns the
 * variant's payload (frozen, shared); string the variant id or the configured field; boolean
 * and number the payload or the configured field. `reason` follows the core's table
 * (DISABLED for a kill, SPLIT, TARGETING_MATCH, DEFAULT, STATIC for a flag without rules,
 * ERROR, and flagrail's STICKY, BUDGET, GUARDRAIL); `flagMetadata` has `revision`,
 * `flagrail_reason` and, when they apply, `rule_id`, `bucket`, `kill_source`.
 */
export declare class FlagrailProvider implements Provider {
  constructor(flags: Flags, options?: FlagrailProviderOptions)
  readonly metadata: { readonly name: 'flagrail' }
  readonly runsOn: 'server'
  readonly events: OpenFeatureEventEmitter
  readonly hooks: []
  /** The `Flags` this provider evaluates with (never closed by the provider). */
  readonly flags: Flags
  initialize(): Promise<void>
  onClose(): Promise<void>
  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>>
  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): Promise<ResolutionDetails<string>>
  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): Promise<ResolutionDetails<number>>
  resolveObjectEvaluation<T extends JsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): Promise<ResolutionDetails<T>>
  /**
   * Forwards feedback to `flags.feedback(run_id, ...)`: `details.value` is the score (-1..1),
   * or the quality (0..1) for an event named `quality`; `score` / `quality` in the details set
   * either explicitly. Needs `run_id` (or `runId`) in the details. Never throws.
   */
  track(trackingEventName: string, context: EvaluationContext, details: TrackingEventDetails): void
}
