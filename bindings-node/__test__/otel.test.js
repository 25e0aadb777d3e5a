'use strict'
// OpenTelemetry spans of flags.call (otel.js), read back with the SDK's InMemorySpanExporter:
// the run span, one attempt span per call of the function, the feature-flag and GenAI
// attributes, errors recorded. The same spans as Python's (tests/python/test_otel.py).

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { beforeEach, test } = require('node:test')

const api = require('@opentelemetry/api')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, SamplingDecision } = require('@opentelemetry/sdk-trace-base')

const { Flags, FlagrailError, Output, Reject } = require('..')

// Records while `on`; non-recording spans otherwise (the "API without SDK" path).
const sampler = {
  on: true,
  shouldSample() {
    return { decision: this.on ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD }
  },
  toString() {
    return 'flagrail test switch'
  },
}
const exporter = new InMemorySpanExporter()
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor(exporter)] }))

beforeEach(() => {
  sampler.on = true
  exporter.reset()
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const ms = (hr) => hr[0] * 1000 + hr[1] / 1e6

function botFlags(extra) {
  return Flags.fromObject({
    revision: 'r7',
    flags: {
      bot: {
        variants: {
          a: { model: 'model-a', temperature: 0.2, max_tokens: 500 },
          b: { model: 'model-b', timeout_ms: 50 },
          human: { ai: false, message: 'Talk to a person' },
        },
        default: 'a',
        fallback: ['b', 'human'],
        rules: [{ id: 'pro', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'a' }],
        ...extra,
      },
    },
  })
}

function spans() {
  const finished = exporter.getFinishedSpans()
  const runs = finished.filter((s) => s.name === 'flagrail.call bot')
  assert.equal(runs.length, 1, finished.map((s) => s.name).join(', '))
  const attempts = finished.filter((s) => s.name === 'flagrail.attempt bot').sort((x, y) => ms(x.startTime) - ms(y.startTime))
  return { run: runs[0], attempts }
}

const parentOf = (span) => span.parentSpanContext?.spanId

test('a served call is a run span with one attempt child, under the caller span', async () => {
  const flags = botFlags()
  const tracer = api.trace.getTracer('app')
  let requestId
  let innerId
  const r = await tracer.startActiveSpan('request', async (request) => {
    requestId = request.spanContext().spanId
    const result = await flags.call('bot', { user_id: 'u1', plan: 'pro' }, async () => {
      // The attempt span is active while the function runs.
      innerId = api.trace.getActiveSpan().spanContext().spanId
      return new Output('hi', { inputTokens: 12, outputTokens: 34, cost: 0.5 })
    })
    request.end()
    return result
  })
  const { run, attempts } = spans()
  assert.equal(attempts.length, 1)
  const [attempt] = attempts
  assert.equal(parentOf(run), requestId)
  assert.equal(parentOf(attempt), run.spanContext().spanId)
  assert.equal(innerId, attempt.spanContext().spanId)
  assert.deepEqual(
    {
      key: run.attributes['feature_flag.key'],
      provider: run.attributes['feature_flag.provider.name'],
      variant: run.attributes['feature_flag.result.variant'],
      reason: run.attributes['feature_flag.result.reason'],
      version: run.attributes['feature_flag.version'],
      runId: run.attributes['flagrail.run_id'],
      rule: run.attributes['flagrail.rule_id'],
      fallback: run.attributes['flagrail.fallback_used'],
      model: run.attributes['gen_ai.request.model'],
      input: run.attributes['gen_ai.usage.input_tokens'],
      output: run.attributes['gen_ai.usage.output_tokens'],
      cost: run.attributes['flagrail.cost'],
    },
    {
      key: 'bot',
      provider: 'flagrail',
      variant: 'a',
      reason: 'targeting_match',
      version: 'r7',
      runId: r.runId,
      rule: 'pro',
      fallback: false,
      model: 'model-a',
      input: 12,
      output: 34,
      cost: 0.5,
    },
  )
  assert.equal(run.status.code, api.SpanStatusCode.UNSET)
  const evaluation = run.events.filter((e) => e.name === 'feature_flag.evaluation')
  assert.equal(evaluation.length, 1)
  assert.equal(evaluation[0].attributes['feature_flag.result.variant'], 'a')
  assert.equal(attempt.attributes['gen_ai.request.temperature'], 0.2)
  assert.equal(attempt.attributes['gen_ai.request.max_tokens'], 500)
  assert.equal(attempt.attributes['gen_ai.usage.output_tokens'], 34)
  assert.equal(attempt.attributes['flagrail.outcome'], 'success')
  assert.equal(attempt.attributes['flagrail.shadow'], false)
})

test('a fallback chain: one attempt span per step, errors with the core error kind, a timeout ends at the timeout', async () => {
  const flags = botFlags()
  const r = await flags.call('bot', { user_id: 'u1' }, async (v) => {
    if (v.id === 'a') throw new Reject('too short')
    await sleep(400) // "b" has a 50 ms timeout (its signal is ignored here)
    return 'late'
  })
  assert.equal(r.variant.id, 'human')
  await sleep(450) // the late attempt settles: its span must not change
  const { run, attempts } = spans()
  assert.deepEqual(
    attempts.map((s) => [s.attributes['feature_flag.result.variant'], s.attributes['error.type'], s.status.code]),
    [
      ['a', 'rejected', api.SpanStatusCode.ERROR],
      ['b', 'timeout', api.SpanStatusCode.ERROR],
    ],
  )
  assert.ok(attempts[0].events.some((e) => e.name === 'exception'))
  assert.ok(ms(attempts[1].endTime) - ms(attempts[1].startTime) < 300)
  assert.equal(run.attributes['feature_flag.result.variant'], 'human')
  assert.equal(run.attributes['flagrail.assigned_variant'], 'a')
  assert.equal(run.attributes['flagrail.fallback_used'], true)
  assert.equal(run.attributes['flagrail.attempts'], 2)
})

test('all attempts failed is an error on the run span', async () => {
  const flags = botFlags({ fallback: ['b'] })
  const err = await flags
    .call('bot', { user_id: 'u1' }, async (v) => {
      throw new Error(`down ${v.id}`)
    })
    .then(
      () => null,
      (e) => e,
    )
  assert.ok(err instanceof FlagrailError)
  const { run, attempts } = spans()
  assert.equal(run.status.code, api.SpanStatusCode.ERROR)
  assert.equal(run.attributes['error.type'], 'ALL_ATTEMPTS_FAILED')
  assert.equal(run.attributes['flagrail.run_id'], err.runId)
  assert.deepEqual(
    attempts.map((s) => s.attributes['error.type']),
    ['other', 'other'],
  )
})

test('an unknown flag is an error span and still rejects', async () => {
  const flags = botFlags()
  await assert.rejects(flags.call('bot-typo', {}, async () => 'x'), { code: 'FLAG_NOT_FOUND' })
  const finished = exporter.getFinishedSpans()
  assert.equal(finished.length, 1)
  assert.equal(finished[0].attributes['error.type'], 'FLAG_NOT_FOUND')
})

test('nothing is recorded without a sampled span, and the result is the same', async () => {
  sampler.on = false
  const flags = botFlags()
  const r = await flags.call('bot', { user_id: 'u1' }, async (v) => v.id)
  assert.equal(r.value, 'a')
  assert.deepEqual(exporter.getFinishedSpans(), [])
})

test('concurrent calls each get their own run span', async () => {
  const flags = botFlags()
  await Promise.all(Array.from({ length: 40 }, (_, i) => flags.call('bot', { user_id: `u${i}` }, async () => 'ok')))
  const finished = exporter.getFinishedSpans()
  const runs = new Set(finished.filter((s) => s.name === 'flagrail.call bot').map((s) => s.spanContext().spanId))
  const attempts = finished.filter((s) => s.name === 'flagrail.attempt bot')
  assert.equal(runs.size, 40)
  assert.equal(attempts.length, 40)
  assert.ok(attempts.every((s) => runs.has(parentOf(s))))
})

test('FLAGRAIL_OTEL=0 keeps call plain: @opentelemetry/api is never loaded', () => {
  const code = `
    const { Flags } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const flags = Flags.fromObject({ revision: 'r', flags: { f: { variants: { a: {} }, default: 'a' } } })
    flags.call('f', {}, async () => 1).then(() => {
      const loaded = Object.keys(require.cache).some((k) => k.includes('@opentelemetry'))
      console.log(JSON.stringify(loaded))
    })`
  for (const [value, expected] of [
    ['0', 'false'],
    ['1', 'true'],
  ]) {
    const out = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, FLAGRAIL_OTEL: value }, encoding: 'utf8' })
    assert.equal(out.status, 0, out.stderr)
    assert.equal(out.stdout.trim(), expected)
  }
})

test('a shadow attempt is an attempt span of the run', async () => {
  const flags = botFlags({ shadow: { variant: 'b', percent: 100, max_cost_per_hour: 5 } })
  const r = await flags.call('bot', { user_id: 'u1' }, async (v) => `answer ${v.id}`)
  assert.equal(r.shadow, 'b')
  // The shadow starts on a later turn of the event loop, after the call settled.
  let attempts = []
  for (let i = 0; i < 1000 && attempts.length < 2; i++) {
    await sleep(10)
    attempts = exporter.getFinishedSpans().filter((s) => s.name === 'flagrail.attempt bot')
  }
  assert.equal(attempts.length, 2)
  const run = exporter.getFinishedSpans().find((s) => s.name === 'flagrail.call bot')
  const shadow = attempts.find((s) => s.attributes['flagrail.shadow'] === true)
  const served = attempts.find((s) => s.attributes['flagrail.shadow'] === false)
  assert.equal(shadow.attributes['feature_flag.result.variant'], 'b')
  assert.equal(served.attributes['feature_flag.result.variant'], 'a')
  assert.ok(attempts.every((s) => parentOf(s) === run.spanContext().spanId))
})
