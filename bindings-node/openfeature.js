'use strict'
/**
 * An OpenFeature provider over a flagrail `Flags`, for `@openfeature/server-sdk` (an optional
 * peer dependency: `npm install @openfeature/server-sdk`).
 *
 *     const { OpenFeature } = require('@openfeature/server-sdk')
 *     const { Flags } = require('flagrail')
 *     const { FlagrailProvider } = require('flagrail/openfeature')
 *     await OpenFeature.setProviderAndWait(new FlagrailProvider(Flags.fromFile('flags.json')))
 *     const client = OpenFeature.getClient()
 *     await client.getObjectValue('support-bot', {}, { targetingKey: 'u-42', plan: 'pro' })
 *
 * The same mapping as Python's `flagrail.openfeature` (docs/ecosystem.md): object resolution
 * returns the variant's payload (frozen, shared); string resolution the variant id or the
 * payload field named in `fields`; boolean and number resolution the payload itself or that
 * field; another type is TYPE_MISMATCH, a missing field GENERAL, an unknown flag
 * FLAG_NOT_FOUND, each with the caller's default. `reason` comes from the core's table
 * (DISABLED, SPLIT, TARGETING_MATCH, DEFAULT, STATIC, ERROR, and flagrail's STICKY, BUDGET,
 * GUARDRAIL), `variant` is the variant id, `flagMetadata` has `revision`, `flagrail_reason`
 * and, when they apply, `rule_id`, `bucket`, `kill_source`. The targeting key is passed as the
 * `user_id` attribute (`targetingKeyAttribute`) unless the context has one. A new live
 * document emits ConfigurationChanged (after Ready when the provider was stale), a rejected
 * reload or a failing URL source emits Stale; they are read from `flags.status()` every
 * `statusIntervalMs` (an unref'd timer: it never keeps the process alive). `track` forwards
 * to `flags.feedback`.
 */

let sdk
try {
  sdk = require('@openfeature/server-sdk')
} catch (err) {
  err.message = `flagrail/openfeature needs the OpenFeature server SDK (npm install @openfeature/server-sdk): ${err.message}`
  throw err
}
const { Flags } = require('./index.js')

const { ErrorCode, OpenFeatureEventEmitter, ProviderEvents, StandardResolutionReasons } = sdk

/** The provider's name (`metadata.name`, and `feature_flag.provider.name` in spans). */
const PROVIDER_NAME = 'flagrail'

/** Rejected reloads whose code means the document itself is wrong (not the source). */
const PARSE_CODES = new Set(['INVALID_DOCUMENT', 'UNKNOWN_OPERATOR', 'INVALID_SIGNATURE'])

class Mismatch extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

function typeName(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  return typeof value
}

class FlagrailProvider {
  /**
   * @param {Flags} flags the handle to evaluate with; the provider never closes it.
   * @param {{ fields?: Record<string, string>, targetingKeyAttribute?: string, statusIntervalMs?: number }} [options]
   */
  constructor(flags, options) {
    if (!(flags instanceof Flags)) throw new TypeError('FlagrailProvider needs a flagrail Flags')
    const opts = options === undefined || options === null ? {} : options
    const fields = new Map()
    for (const [key, field] of Object.entries(opts.fields ?? {})) {
      if (typeof field !== 'string' || field === '') {
        throw new TypeError('fields maps flag keys to payload field names (non-empty strings)')
      }
      fields.set(key, field)
    }
    const unit = opts.targetingKeyAttribute ?? 'user_id'
    if (typeof unit !== 'string' || unit === '') throw new TypeError('targetingKeyAttribute must be a non-empty string')
    const interval = opts.statusIntervalMs ?? 1000
    if (!Number.isInteger(interval) || interval < 1) throw new TypeError('statusIntervalMs must be a whole number of milliseconds >= 1')
    this.metadata = Object.freeze({ name: PROVIDER_NAME })
    this.runsOn = 'server'
    this.events = new OpenFeatureEventEmitter()
    this.hooks = []
    this._flags = flags
    this._fields = fields
    this._unit = unit
    this._interval = interval
    this._timer = null
    this._seen = null
    this._stale = false
  }

  /** The `Flags` this provider evaluates with. */
  get flags() {
    return this._flags
  }

  async initialize() {
    this._seen = this._flags.status()
    if (this._timer === null) {
      this._timer = setInterval(() => this._watch(), this._interval)
      this._timer.unref()
    }
  }

  async onClose() {
    if (this._timer !== null) clearInterval(this._timer)
    this._timer = null
  }

  /** Compares the handle's status with the last one read and emits what changed. */
  _watch() {
    let now
    try {
      now = this._flags.status()
    } catch {
      return
    }
    const before = this._seen ?? now
    this._seen = now
    // Stale: a URL source whose polls are failing, or a file source whose last reload was
    // rejected (`last_error` is cleared by the next good document).
    const staleNow = now.remote !== null ? now.remote.consecutive_failures > 0 : now.last_error !== null
    const reloaded = now.revision !== before.revision || now.reloads !== before.reloads
    const metadata = { revision: now.revision }
    if (reloaded) metadata.previous_revision = before.revision
    if (this._stale && !staleNow) {
      this._stale = false
      this.events.emit(ProviderEvents.Ready, { metadata })
    }
    if (reloaded) {
      this.events.emit(ProviderEvents.ConfigurationChanged, {
        message: `flag document revision ${now.revision} is live`,
        metadata,
      })
    }
    if (staleNow && !this._stale) {
      this._stale = true
      const error = now.last_error
      this.events.emit(ProviderEvents.Stale, {
        message: error !== null ? error.message : 'the flag source is failing: the last good document keeps serving',
        errorCode: error !== null && PARSE_CODES.has(error.code) ? ErrorCode.PARSE_ERROR : ErrorCode.GENERAL,
        metadata: { revision: now.revision, code: error !== null ? error.code : '' },
      })
    }
  }

  _context(context) {
    const out = {}
    if (context === undefined || context === null) return out
    for (const [name, value] of Object.entries(context)) {
      if (name === 'targetingKey') continue
      out[name] = value instanceof Date ? value.toISOString() : value
    }
    const key = context.targetingKey
    if (typeof key === 'string' && !(this._unit in out)) out[this._unit] = key
    return out
  }

  _evaluate(flagKey, defaultValue, context, read) {
    const variant = this._flags.variant(flagKey, this._context(context))
    const flagMetadata = { revision: variant.revision, flagrail_reason: variant.reason }
    if (variant.reason === 'FLAG_NOT_FOUND') {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.FLAG_NOT_FOUND,
        errorMessage: `flag "${flagKey}" is not in revision ${variant.revision}`,
        flagMetadata,
      }
    }
    if (variant.ruleId !== null) flagMetadata.rule_id = variant.ruleId
    if (variant.bucket !== null) flagMetadata.bucket = variant.bucket
    if (variant.killSource !== null) flagMetadata.kill_source = variant.killSource
    let value
    try {
      value = read(variant)
    } catch (err) {
      if (!(err instanceof Mismatch)) throw err
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: err.code,
        errorMessage: err.message,
        variant: variant.id,
        flagMetadata,
      }
    }
    return { value, reason: this._flags._openFeatureReason(variant), variant: variant.id, flagMetadata }
  }

  /** The payload (or the configured field of it) when `accepts` it. */
  _field(variant, wanted, accepts) {
    const field = this._fields.get(variant.flag)
    let value
    let where
    if (field === undefined) {
      value = variant.payload
      where = `the payload of variant "${variant.id}"`
    } else {
      const payload = variant.payload
      if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || !Object.prototype.hasOwnProperty.call(payload, field)) {
        throw new Mismatch(ErrorCode.GENERAL, `variant "${variant.id}" of flag "${variant.flag}" has no payload field "${field}"`)
      }
      value = payload[field]
      where = `field "${field}" of variant "${variant.id}"`
    }
    if (!accepts(value)) {
      throw new Mismatch(ErrorCode.TYPE_MISMATCH, `flag "${variant.flag}": ${where} is ${typeName(value)}, not ${wanted}`)
    }
    return value
  }

  async resolveBooleanEvaluation(flagKey, defaultValue, context) {
    return this._evaluate(flagKey, defaultValue, context, (v) => this._field(v, 'a boolean', (x) => typeof x === 'boolean'))
  }

  async resolveStringEvaluation(flagKey, defaultValue, context) {
    return this._evaluate(flagKey, defaultValue, context, (v) =>
      this._fields.has(v.flag) ? this._field(v, 'a string', (x) => typeof x === 'string') : String(v.id),
    )
  }

  async resolveNumberEvaluation(flagKey, defaultValue, context) {
    return this._evaluate(flagKey, defaultValue, context, (v) => this._field(v, 'a number', (x) => typeof x === 'number'))
  }

  async resolveObjectEvaluation(flagKey, defaultValue, context) {
    return this._evaluate(flagKey, defaultValue, context, (v) => {
      const payload = v.payload
      if (payload === null || typeof payload !== 'object') {
        throw new Mismatch(ErrorCode.TYPE_MISMATCH, `flag "${v.flag}": the payload of variant "${v.id}" is ${typeName(payload)}, not an object`)
      }
      return payload
    })
  }

  /**
   * Forwards feedback on a run to `flags.feedback`: `details.value` is the score (-1..1), or
   * the quality (0..1) for an event named `quality`; `score` / `quality` in the details set
   * either explicitly. Needs `run_id` (or `runId`) in the details; never throws (a bad value
   * is a process warning).
   */
  track(trackingEventName, context, details) {
    if (details === undefined || details === null) return
    const runId = details.run_id ?? details.runId
    if (typeof runId !== 'string') return
    let score = details.score
    let quality = details.quality
    if (score === undefined && quality === undefined && typeof details.value === 'number') {
      if (trackingEventName === 'quality') quality = details.value
      else score = details.value
    }
    if (score === undefined && quality === undefined) return
    try {
      this._flags.feedback(runId, { score, quality })
    } catch (err) {
      process.emitWarning(`flagrail: OpenFeature track(${JSON.stringify(trackingEventName)}) ignored: ${err.message}`, {
        code: 'FLAGRAIL_TRACK',
      })
    }
  }
}

module.exports = { FlagrailProvider, PROVIDER_NAME }
