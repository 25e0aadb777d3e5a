'use strict'
/**
 * OpenTelemetry spans around `Flags.call`, the same as Python's (flagrail/_otel.py).
 *
 * index.js loads this file on the first `call` and uses it only when `@opentelemetry/api` (an
 * optional peer dependency) can be required and `FLAGRAIL_OTEL` is not `0`; otherwise `call`
 * runs the chain directly. While no SDK is registered (the API's non-recording spans) a call
 * goes straight to the chain as well.
 *
 * A run span `flagrail.call <flag>` with one child `flagrail.attempt <flag>` per call of the
 * function (active while it runs, so that the model client's spans nest under it), carrying
 * OpenTelemetry's feature-flag attributes (`feature_flag.key`, `feature_flag.result.variant`,
 * `feature_flag.result.reason`, `feature_flag.version` = the revision,
 * `feature_flag.provider.name`), the GenAI ones the variant and an `Output` know
 * (`gen_ai.request.model`, `gen_ai.request.temperature`, `gen_ai.request.max_tokens`,
 * `gen_ai.request.top_p`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`) and
 * flagrail's (`flagrail.run_id`, `flagrail.rule_id`, `flagrail.assigned_variant`,
 * `flagrail.fallback_used`, `flagrail.attempts`, `flagrail.cost`, `flagrail.outcome`,
 * `flagrail.shadow`). A failed attempt has status ERROR and `error.type` = the core's error
 * kind; an attempt abandoned at its timeout ends at the timeout.
 *
 * Not public API.
 */

const PROVIDER_NAME = 'flagrail'

function load() {
  const api = require('@opentelemetry/api')
  const { version } = require('./package.json')
  const { Output } = require('./index.js')
  const tracer = api.trace.getTracer('flagrail', version)
  const ERROR = api.SpanStatusCode.ERROR
  // What the global provider delegates to until an SDK is registered (the API's shared no-op
  // provider): while it is, every span would be non-recording and a call runs untraced.
  const NO_SDK = new api.ProxyTracerProvider().getDelegate()
  const withoutSdk = () => api.trace.getTracerProvider().getDelegate() === NO_SDK

  function variantAttributes(variant, attributes) {
    const payload = variant.payload
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return
    if (typeof payload.model === 'string') attributes['gen_ai.request.model'] = payload.model
    if (typeof payload.temperature === 'number') attributes['gen_ai.request.temperature'] = payload.temperature
    if (typeof payload.top_p === 'number') attributes['gen_ai.request.top_p'] = payload.top_p
    if (Number.isInteger(payload.max_tokens)) attributes['gen_ai.request.max_tokens'] = payload.max_tokens
  }

  function errorMessage(err) {
    if (err instanceof Error) return err.message || err.name
    return String(err)
  }

  /** One call of the user's function; its span is ended exactly once. */
  class Attempt {
    constructor(span, startMs, endedByRun) {
      this.span = span
      this.startMs = startMs
      this.ended = false
      // An attempt of the served chain: the run's record of it (outcome, the core's error
      // kind, usage, latency) labels and ends it, so that an attempt abandoned at its timeout
      // reads as a timeout even when its function settles later. A shadow's ends itself.
      this.endedByRun = endedByRun
    }

    succeed(value) {
      if (this.ended || this.endedByRun) return
      const span = this.span
      span.setAttribute('flagrail.outcome', 'success')
      if (value instanceof Output) {
        if (value.inputTokens !== null) span.setAttribute('gen_ai.usage.input_tokens', value.inputTokens)
        if (value.outputTokens !== null) span.setAttribute('gen_ai.usage.output_tokens', value.outputTokens)
        if (value.cost !== null) span.setAttribute('flagrail.cost', value.cost)
      }
      this.end()
    }

    fail(err) {
      if (this.ended) return
      const span = this.span
      if (err instanceof Error) span.recordException(err)
      else span.recordException(String(err))
      span.setStatus({ code: ERROR, message: errorMessage(err) })
      if (this.endedByRun) return
      const kind = err !== null && typeof err === 'object' && typeof err.errorKind === 'string' ? err.errorKind : null
      span.setAttribute('flagrail.outcome', 'error')
      span.setAttribute('error.type', kind ?? (err instanceof Error ? err.name : typeof err))
      this.end()
    }

    settle(record) {
      if (this.ended) return
      const span = this.span
      span.setAttribute('flagrail.outcome', record.outcome)
      if (record.inputTokens !== null) span.setAttribute('gen_ai.usage.input_tokens', record.inputTokens)
      if (record.outputTokens !== null) span.setAttribute('gen_ai.usage.output_tokens', record.outputTokens)
      if (record.cost !== null) span.setAttribute('flagrail.cost', record.cost)
      if (record.errorKind !== null) {
        span.setAttribute('error.type', record.errorKind)
        span.setStatus({ code: ERROR, message: record.error ?? record.errorKind })
      }
      this.end(this.startMs + record.latencyMs)
    }

    end(at) {
      if (this.ended) return
      this.ended = true
      this.span.end(at)
    }
  }

  /** The user's function as the chain calls it: each call is an attempt span. */
  function traced(fn, flag, parent, attempts) {
    let calls = 0
    return function attempt(variant, options) {
      calls++
      const attributes = {
        'feature_flag.key': flag,
        'feature_flag.provider.name': PROVIDER_NAME,
        'feature_flag.result.variant': String(variant.id),
        'feature_flag.version': variant.revision,
        'flagrail.shadow': variant.isShadow,
        'flagrail.attempt': calls,
      }
      variantAttributes(variant, attributes)
      const startMs = Date.now()
      const span = tracer.startSpan(`flagrail.attempt ${flag}`, { attributes, startTime: startMs }, parent)
      const record = new Attempt(span, startMs, !variant.isShadow)
      if (!variant.isShadow) attempts.set(String(variant.id), record)
      let pending
      try {
        pending = api.context.with(api.trace.setSpan(parent, span), fn, undefined, variant, options)
      } catch (err) {
        record.fail(err)
        throw err
      }
      return Promise.resolve(pending).then(
        (value) => {
          record.succeed(value)
          return value
        },
        (err) => {
          record.fail(err)
          throw err
        },
      )
    }
  }

  function usage(attemptsList, attributes) {
    attributes['flagrail.attempts'] = attemptsList.length
    let input = null
    let output = null
    let cost = null
    for (const a of attemptsList) {
      if (a.inputTokens !== null) input = (input ?? 0) + a.inputTokens
      if (a.outputTokens !== null) output = (output ?? 0) + a.outputTokens
      if (a.cost !== null) cost = (cost ?? 0) + a.cost
    }
    if (input !== null) attributes['gen_ai.usage.input_tokens'] = input
    if (output !== null) attributes['gen_ai.usage.output_tokens'] = output
    if (cost !== null) attributes['flagrail.cost'] = cost
  }

  function settle(attempts, attemptsList) {
    if (Array.isArray(attemptsList)) {
      for (const record of attemptsList) {
        const attempt = attempts.get(record.variant)
        if (attempt !== undefined) attempt.settle(record)
      }
    }
    // Anything still open: the call itself was abandoned (the caller's signal).
    for (const attempt of attempts.values()) attempt.end()
  }

  async function traceCall(flags, flag, context, fn, callOptions) {
    if (withoutSdk()) return flags._call(flag, context, fn, callOptions)
    const runSpan = tracer.startSpan(`flagrail.call ${flag}`, {
      attributes: { 'feature_flag.key': String(flag), 'feature_flag.provider.name': PROVIDER_NAME },
    })
    if (!runSpan.isRecording() || typeof fn !== 'function') {
      runSpan.end()
      return flags._call(flag, context, fn, callOptions)
    }
    const parent = api.trace.setSpan(api.context.active(), runSpan)
    const attempts = new Map()
    let result
    try {
      result = await api.context.with(parent, () => flags._call(flag, context, traced(fn, String(flag), parent, attempts), callOptions))
    } catch (err) {
      const attributes = {}
      if (err !== null && typeof err === 'object') {
        if (typeof err.runId === 'string') attributes['flagrail.run_id'] = err.runId
        if (Array.isArray(err.attempts)) usage(err.attempts, attributes)
        attributes['error.type'] = typeof err.code === 'string' ? err.code : err instanceof Error ? err.name : typeof err
      }
      runSpan.setAttributes(attributes)
      runSpan.recordException(err instanceof Error ? err : String(err))
      runSpan.setStatus({ code: ERROR, message: errorMessage(err) })
      settle(attempts, err !== null && typeof err === 'object' ? err.attempts : undefined)
      runSpan.end()
      throw err
    }
    const variant = result.variant
    const reason = flags._openFeatureReason(variant).toLowerCase()
    const attributes = {
      'feature_flag.result.variant': String(variant.id),
      'feature_flag.result.reason': reason,
      'feature_flag.version': variant.revision,
      'flagrail.run_id': result.runId,
      'flagrail.assigned_variant': result.assigned,
      'flagrail.fallback_used': result.fallbackUsed,
    }
    if (variant.ruleId !== null) attributes['flagrail.rule_id'] = variant.ruleId
    variantAttributes(variant, attributes)
    usage(result.attempts, attributes)
    runSpan.setAttributes(attributes)
    runSpan.addEvent('feature_flag.evaluation', {
      'feature_flag.key': variant.flag,
      'feature_flag.provider.name': PROVIDER_NAME,
      'feature_flag.result.variant': String(variant.id),
      'feature_flag.result.reason': reason,
      'feature_flag.version': variant.revision,
    })
    settle(attempts, result.attempts)
    runSpan.end()
    return result
  }

  return { traceCall }
}

module.exports = { load }
