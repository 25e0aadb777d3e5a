'use strict'
// The runtime around the call, through the real addon: flags.call (fallback chains, bounds,
// timeouts, Reject, classification, non-AI serving), trackers, feedback, metrics, events and
// guardrails. The only stand-in is the provider: a local async function with controllable
// latency and failures.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')

const { Flags, FlagrailError, Output, Reject, Variant } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-runtime-'))
}

/** A flag document with one flag `bot` (and whatever `extra` adds to it). */
function botFlags(extra, variants) {
  return Flags.fromObject({
    revision: 'rt-1',
    flags: {
      bot: {
        bucket_by: 'user_id',
        variants: variants ?? {
          a: { model: 'model-a' },
          b: { model: 'model-b' },
          c: { model: 'model-c' },
          human: { ai: false, message: 'A person will answer.' },
        },
        default: 'a',
        fallback: ['b', 'c', 'human'],
        ...extra,
      },
    },
  })
}

/**
 * A fake provider: per variant id, how long it takes and whether it fails (an error to throw,
 * or a function returning one). Records every call.
 */
function provider(behaviour) {
  const calls = []
  const fn = async (variant, options) => {
    calls.push({ id: variant.id, attempt: options.attempt, timeoutMs: options.timeoutMs, variant })
    const b = behaviour[variant.id] ?? {}
    if (b.latency) await sleep(b.latency)
    if (b.fail) throw typeof b.fail === 'function' ? b.fail(variant) : b.fail
    return b.value ?? `answer from ${variant.id}`
  }
  return { fn, calls }
}

describe('call: the fallback chain', () => {
  test('tries the assigned variant, then the fallback list in order', async () => {
    const flags = botFlags()
    const { fn, calls } = provider({ a: { fail: new Error('boom') }, b: { fail: new Error('boom') } })
    const r = await flags.call('bot', { user_id: 'u1' }, fn)
    assert.equal(r.value, 'answer from c')
    assert.equal(r.variant.id, 'c')
    assert.equal(r.assigned, 'a')
    assert.equal(r.fallbackUsed, true)
    assert.match(r.runId, /^[0-9a-f]{32}$/)
    assert.deepEqual(
      calls.map((c) => [c.id, c.attempt]),
      [
        ['a', 1],
        ['b', 2],
        ['c', 3],
      ],
    )
    assert.deepEqual(
      r.attempts.map((a) => [a.variant, a.outcome, a.errorKind]),
      [
        ['a', 'error', 'other'],
        ['b', 'error', 'other'],
        ['c', 'success', null],
      ],
    )
    assert.equal(r.attempts[0].error, 'Error: boom')
    for (const a of r.attempts) {
      assert.equal(typeof a.latencyMs, 'number')
      assert.ok(a.latencyMs >= 0)
      assert.deepEqual(Object.keys(a), ['variant', 'outcome', 'errorKind', 'error', 'latencyMs', 'inputTokens', 'outputTokens', 'cost'])
    }
  })

  test('fn gets Variants shaped like variant(): the step id and payload, the evaluation reason', async () => {
    const flags = botFlags({ rules: [{ id: 'split', split: [{ variant: 'a', percent: 100 }] }] })
    const { fn, calls } = provider({ a: { fail: new Error('x') } })
    const user = { user_id: 'u2' }
    const r = await flags.call('bot', user, fn)
    const direct = flags.variant('bot', user)
    assert.ok(calls[0].variant instanceof Variant)
    assert.deepEqual({ ...calls[0].variant }, { ...direct })
    const second = calls[1].variant
    assert.equal(second.id, 'b')
    assert.deepEqual(second.payload, { model: 'model-b' })
    assert.ok(Object.isFrozen(second.payload))
    assert.equal(second.get('model'), 'model-b')
    assert.equal(second.reason, 'SPLIT')
    assert.equal(second.ruleId, 'split')
    assert.equal(second.bucket, direct.bucket)
    assert.equal(second.revision, 'rt-1')
    assert.equal(r.variant, second)
  })

  test('the first success ends the call: no fallback, fallbackUsed false', async () => {
    const flags = botFlags()
    const { fn, calls } = provider({})
    const r = await flags.call('bot', { user_id: 'u1' }, fn)
    assert.equal(r.value, 'answer from a')
    assert.equal(r.fallbackUsed, false)
    assert.equal(calls.length, 1)
    assert.equal(r.attempts.length, 1)
  })

  test('a synchronous fn, and one that throws synchronously, work too', async () => {
    const flags = botFlags()
    let n = 0
    const r = await flags.call('bot', {}, (v) => {
      n++
      if (v.id === 'a') throw new Error('sync failure')
      return 42
    })
    assert.equal(r.value, 42)
    assert.equal(r.variant.id, 'b')
    assert.equal(n, 2)
  })

  test('max_attempts bounds the model calls; the chain then serves its non-AI variant', async () => {
    const flags = botFlags({ max_attempts: 2 })
    const { fn, calls } = provider({ a: { fail: new Error('x') }, b: { fail: new Error('x') } })
    const r = await flags.call('bot', { user_id: 'u1' }, fn)
    assert.deepEqual(
      calls.map((c) => c.id),
      ['a', 'b'],
    )
    assert.equal(r.variant.id, 'human')
    assert.equal(r.value, null)
    assert.equal(r.fallbackUsed, true)
    assert.equal(r.attempts.length, 2)
  })

  test('max_total_ms bounds the whole call: later attempts get what is left, then none', async () => {
    const variants = {
      a: { timeout_ms: 1000 },
      b: { timeout_ms: 1000 },
      c: { timeout_ms: 1000 },
      human: { ai: false },
    }
    const flags = botFlags({ max_total_ms: 300 }, variants)
    const { fn, calls } = provider({ a: { latency: 200, fail: new Error('slow failure') }, b: { latency: 5000 } })
    const started = Date.now()
    const r = await flags.call('bot', {}, fn)
    const elapsed = Date.now() - started
    assert.ok(elapsed < 1000, `the call took ${elapsed} ms`)
    assert.ok(calls[0].timeoutMs > 250 && calls[0].timeoutMs <= 300, `a got ${calls[0].timeoutMs} ms`)
    assert.ok(calls[1].timeoutMs <= 100 && calls[1].timeoutMs >= 0, `b got ${calls[1].timeoutMs} ms`)
    assert.deepEqual(
      calls.map((c) => c.id),
      ['a', 'b'],
      'c is never called once the total time is spent',
    )
    assert.deepEqual(
      r.attempts.map((a) => a.errorKind),
      ['other', 'timeout'],
    )
    assert.equal(r.variant.id, 'human')
  })

  test('a non-AI assigned variant serves without calling fn', async () => {
    const flags = botFlags({ default: 'human' })
    let called = false
    const r = await flags.call('bot', {}, () => {
      called = true
    })
    assert.equal(called, false)
    assert.equal(r.value, null)
    assert.equal(r.variant.id, 'human')
    assert.equal(r.variant.payload.message, 'A person will answer.')
    assert.equal(r.fallbackUsed, false)
    assert.deepEqual(r.attempts, [])
  })

  test('a killed flag serves its kill variant (non-AI) without calling fn', async () => {
    const flags = botFlags({ kill: { active: true, serve: 'human' } })
    let called = false
    const r = await flags.call('bot', {}, () => {
      called = true
    })
    assert.equal(called, false)
    assert.equal(r.variant.id, 'human')
    assert.equal(r.variant.reason, 'KILLED')
  })

  test('every step failing with no non-AI variant rejects with ALL_ATTEMPTS_FAILED', async () => {
    const flags = botFlags({ fallback: ['b'] })
    const { fn } = provider({ a: { fail: new Error('x') }, b: { fail: Object.assign(new Error('y'), { status: 503 }) } })
    await assert.rejects(flags.call('bot', {}, fn), (err) => {
      assert.ok(err instanceof FlagrailError)
      assert.equal(err.code, 'ALL_ATTEMPTS_FAILED')
      assert.match(err.message, /fallback chain of "bot" failed \(2 attempts\)/)
      assert.deepEqual(
        err.attempts.map((a) => [a.variant, a.errorKind]),
        [
          ['a', 'other'],
          ['b', 'server'],
        ],
      )
      assert.match(err.runId, /^[0-9a-f]{32}$/)
      return true
    })
  })

  test('an unknown flag rejects with FLAG_NOT_FOUND; a non-function fn rejects', async () => {
    const flags = botFlags()
    await assert.rejects(flags.call('nope', {}, async () => 1), (err) => {
      assert.ok(err instanceof FlagrailError)
      assert.equal(err.code, 'FLAG_NOT_FOUND')
      assert.match(err.message, /"nope"/)
      return true
    })
    await assert.rejects(flags.call('bot', {}, 'not a function'), { code: 'INVALID_ARGUMENT' })
  })

  test('Output reports tokens and cost; a missing cost comes from the variant prices', async () => {
    const variants = {
      a: { cost_per_1k_input_tokens: 3, cost_per_1k_output_tokens: 15 },
      b: {},
      human: { ai: false },
    }
    const flags = botFlags({ fallback: ['b', 'human'] }, variants)
    const r = await flags.call('bot', {}, async () => new Output('hi', { inputTokens: 1000, outputTokens: 200 }))
    assert.equal(r.value, 'hi')
    assert.equal(r.attempts[0].inputTokens, 1000)
    assert.equal(r.attempts[0].outputTokens, 200)
    assert.ok(Math.abs(r.attempts[0].cost - 6) < 1e-9, `cost ${r.attempts[0].cost}`)
    const given = await flags.call('bot', {}, async () => new Output('hi', { inputTokens: 10, cost: 0.5 }))
    assert.equal(given.attempts[0].cost, 0.5)
    const metrics = flags.metrics().bot.a
    assert.equal(metrics.tokens.input, 1010)
    assert.equal(metrics.tokens.output, 200)
    assert.ok(Math.abs(metrics.cost - 6.5) < 1e-9)
    assert.throws(() => new Output('x', { inputTokens: -1 }), { code: 'INVALID_ARGUMENT' })
    assert.throws(() => new Output('x', { outputTokens: 1.5 }), { code: 'INVALID_ARGUMENT' })
  })
})

describe('call: reading the context', () => {
  // A call reads the flag's run attributes through a generated per-flag function and one raw
  // native call; these are the cases it hands to the careful path, which must agree with it.
  const rules = [
    { id: 'pro', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'b' },
    { id: 'split', split: [{ variant: 'a', percent: 50 }, { variant: 'c', percent: 50 }] },
  ]
  const answer = async (variant) => variant.id

  test('a throwing getter reads as missing, as in variant(), and the call starts one run', async () => {
    const flags = botFlags({ rules })
    const ctx = { user_id: 'u7' }
    Object.defineProperty(ctx, 'plan', {
      get() {
        throw new Error('getter')
      },
    })
    const r = await flags.call('bot', ctx, answer)
    assert.equal(r.value, flags.variant('bot', { user_id: 'u7' }).id)
    assert.equal(r.variant.ruleId, 'split')
    assert.equal(flags.metrics().bot[r.value].requests, 1)
  })

  test('null, undefined and primitive contexts read every attribute as missing', async () => {
    const flags = botFlags({ rules })
    for (const ctx of [null, undefined, 'u7', 7]) {
      const r = await flags.call('bot', ctx, answer)
      const direct = flags.variant('bot', ctx)
      assert.equal(r.value, direct.id)
      assert.equal(r.variant.reason, direct.reason)
    }
  })

  test('flags that read eight run attributes (the most one raw call takes) and more', async () => {
    // Run attributes: these, plus user_id (the unit) and segment.
    for (const count of [6, 9]) {
      const names = Array.from({ length: count }, (_, i) => `attr${i}`)
      const flags = botFlags({
        rules: [
          { id: 'all', when: { all: names.map((attr) => ({ attr, op: 'eq', value: 'x' })) }, serve: 'c' },
          ...rules,
        ],
      })
      const all = Object.fromEntries(names.map((n) => [n, 'x']))
      const hit = await flags.call('bot', { user_id: 'u1', ...all }, answer)
      assert.equal(hit.value, 'c')
      assert.equal(hit.variant.ruleId, 'all')
      const miss = await flags.call('bot', { user_id: 'u1', ...all, [names[count - 1]]: 'y' }, answer)
      assert.equal(miss.value, flags.variant('bot', { user_id: 'u1' }).id)
    }
  })

  test('a call after a reload evaluates the new document', async () => {
    const dir = tmpdir()
    const file = path.join(dir, 'flags.json')
    const doc = (serve) =>
      JSON.stringify({ revision: `rev-${serve}`, flags: { bot: { variants: { a: {}, b: {} }, default: serve } } })
    fs.writeFileSync(file, doc('a'))
    const flags = Flags.fromFile(file, { reload: false })
    assert.equal((await flags.call('bot', { user_id: 'u1' }, answer)).value, 'a')
    fs.writeFileSync(file, doc('b'))
    assert.equal(flags.reloadIfChanged(), true)
    const r = await flags.call('bot', { user_id: 'u1' }, answer)
    assert.equal(r.value, 'b')
    assert.equal(r.variant.revision, 'rev-b')
  })
})

describe('call: timeouts', () => {
  const variants = {
    slow: { timeout_ms: 100 },
    stable: {},
    human: { ai: false },
  }

  test('a 10 s call with a 100 ms timeout ends at the timeout, aborting its signal', async () => {
    const flags = botFlags({ default: 'slow', fallback: ['stable', 'human'] }, variants)
    let signal
    let abortEvents = 0
    const started = Date.now()
    const r = await flags.call('bot', {}, async (variant, options) => {
      if (variant.id !== 'slow') return 'fallback answer'
      signal = options.signal
      signal.addEventListener('abort', () => abortEvents++)
      // Ignores the signal: the call must still move on at the timeout.
      await new Promise((resolve) => setTimeout(resolve, 10_000).unref())
      return 'too late'
    })
    const elapsed = Date.now() - started
    assert.ok(elapsed < 2000, `returned after ${elapsed} ms`)
    assert.ok(elapsed >= 90, `returned after ${elapsed} ms`)
    assert.equal(r.value, 'fallback answer')
    assert.equal(r.variant.id, 'stable')
    assert.equal(signal.aborted, true)
    assert.equal(abortEvents, 1)
    assert.equal(signal.reason.name, 'TimeoutError')
    assert.equal(r.attempts[0].errorKind, 'timeout')
    assert.equal(r.attempts[0].error, 'timed out after 100 ms')
    assert.ok(r.attempts[0].latencyMs >= 90 && r.attempts[0].latencyMs < 2000, `latency ${r.attempts[0].latencyMs}`)
    assert.equal(flags.metrics().bot.slow.errors_by_kind.timeout, 1)
  })

  test('a function that honours the signal is cancelled at the timeout', async () => {
    const flags = botFlags({ default: 'slow', fallback: ['stable', 'human'] }, variants)
    let cancelled = false
    const started = Date.now()
    const r = await flags.call('bot', {}, (variant, { signal }) => {
      if (variant.id !== 'slow') return 'ok'
      return new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, 10_000, 'too late')
        signal.addEventListener('abort', () => {
          cancelled = true
          clearTimeout(timer)
          reject(signal.reason)
        })
      })
    })
    assert.ok(Date.now() - started < 2000)
    assert.equal(cancelled, true)
    assert.equal(r.attempts[0].errorKind, 'timeout')
    assert.equal(r.value, 'ok')
  })

  test('the signal of an attempt without a time limit never aborts; a quick call clears its timer', async () => {
    const flags = botFlags({ default: 'stable', fallback: ['human'] }, variants)
    let signal
    const r = await flags.call('bot', {}, async (_, options) => {
      signal = options.signal
      assert.equal(options.timeoutMs, null)
      return 1
    })
    assert.equal(r.value, 1)
    assert.equal(signal.aborted, false)
    // With a limit: the timer is cleared when fn settles first (nothing fires later).
    const quick = botFlags({ default: 'slow', fallback: ['human'] }, variants)
    let late
    const q = await quick.call('bot', {}, async (_, options) => {
      late = options
      return 2
    })
    await sleep(150)
    assert.equal(q.value, 2)
    assert.equal(late.signal.aborted, false)
  })
})

describe('call: failures', () => {
  const variants = { a: {}, human: { ai: false } }

  async function kindOf(thrown) {
    const flags = botFlags({ fallback: ['human'] }, variants)
    const r = await flags.call('bot', {}, async () => {
      throw thrown
    })
    assert.equal(r.variant.id, 'human')
    return r.attempts[0].errorKind
  }

  test('Reject moves on to the next step with the kind rejected', async () => {
    const flags = botFlags()
    const { fn, calls } = provider({ a: { fail: new Reject('not good enough') } })
    const r = await flags.call('bot', {}, fn)
    assert.equal(r.variant.id, 'b')
    assert.equal(calls.length, 2)
    assert.equal(r.attempts[0].errorKind, 'rejected')
    assert.equal(r.attempts[0].error, 'Reject: not good enough')
    const reject = new Reject('why')
    assert.ok(reject instanceof Error)
    assert.equal(reject.name, 'Reject')
    assert.equal(reject.errorKind, 'rejected')
  })

  test('errors are classified by the core from status, name, code, message or a declared kind', async () => {
    class RateLimitError extends Error {}
    class APIError extends Error {
      constructor(status, message) {
        super(message)
        this.status = status
      }
    }
    assert.equal(await kindOf(Object.assign(new Error('slow down'), { status: 429 })), 'rate_limit')
    assert.equal(await kindOf(new APIError(429, 'x')), 'rate_limit')
    assert.equal(await kindOf(new RateLimitError('x')), 'rate_limit', 'the class name counts')
    assert.equal(await kindOf(Object.assign(new Error('unavailable'), { statusCode: 503 })), 'server')
    assert.equal(await kindOf(Object.assign(new Error('x'), { status: '502' })), 'server')
    assert.equal(await kindOf(Object.assign(new Error('x'), { errorKind: 'content_policy' })), 'content_policy')
    assert.equal(await kindOf(Object.assign(new Error('x'), { error_kind: 'rate_limit' })), 'rate_limit')
    assert.equal(
      await kindOf(Object.assign(new Error('Your request was rejected'), { status: 400, code: 'content_policy_violation' })),
      'content_policy',
    )
    assert.equal(await kindOf(new Error('blocked by the safety system')), 'content_policy')
    assert.equal(await kindOf(Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' })), 'timeout')
    assert.equal(await kindOf(new DOMException('aborted', 'AbortError')), 'timeout')
    assert.equal(await kindOf(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'server')
    assert.equal(await kindOf(new TypeError('cannot read x of undefined')), 'other')
    assert.equal(await kindOf('a string'), 'other')
    assert.equal(await kindOf(null), 'other')
    const hostile = new Error('x')
    Object.defineProperty(hostile, 'status', {
      get() {
        throw new Error('getter')
      },
    })
    assert.equal(await kindOf(hostile), 'other', 'a throwing getter reads as missing')
  })
})

describe('trackers and feedback', () => {
  test('a tracker records the variant the app got, once', async () => {
    const flags = botFlags({ fallback: ['b', 'human'] }, { a: { cost_per_1k_input_tokens: 1, cost_per_1k_output_tokens: 10 }, b: {}, human: { ai: false } })
    const events = []
    flags.onEvent((e) => events.push(e))
    const user = { user_id: 'u7', segment: 'pro' }
    const v = flags.variant('bot', user)
    const t = flags.tracker(v, user)
    assert.match(t.runId, /^[0-9a-f]{32}$/)
    assert.equal(t.variant, v)
    assert.equal(t.success({ latencyMs: 250, inputTokens: 100, outputTokens: 500 }), true)
    assert.equal(t.success(), false, 'a second report records nothing')
    assert.equal(t.error('timeout'), false)
    const m = flags.metrics().bot.a
    assert.equal(m.requests, 1)
    assert.equal(m.latency_ms.count, 1)
    assert.equal(m.tokens.output, 500)
    assert.ok(Math.abs(m.cost - 5.1) < 1e-9, `cost ${m.cost}`)
    assert.ok(m.segments.pro, 'the segment label comes from the context')
    const outcome = events.find((e) => e.type === 'outcome')
    assert.equal(outcome.run_id, t.runId)
    assert.equal(outcome.latency_ms, 250)
    assert.equal(outcome.unit, 'u7')
    assert.equal(outcome.segment, 'pro')
    assert.equal(events[0].type, 'exposure')
  })

  test('tracker.error takes a kind or the thrown error', () => {
    const flags = botFlags()
    const v = flags.variant('bot', {})
    assert.equal(flags.tracker(v).error('rate_limit', { latencyMs: 5 }), true)
    assert.equal(flags.tracker(v).error(Object.assign(new Error('x'), { status: 503 })), true)
    assert.throws(() => flags.tracker(v).error('ratelimit'), { code: 'INVALID_ARGUMENT', message: /rate_limit/ })
    const kinds = flags.metrics().bot.a.errors_by_kind
    assert.equal(kinds.rate_limit, 1)
    assert.equal(kinds.server, 1)
  })

  test('a tracker for an unknown flag or a made-up variant throws', () => {
    const flags = botFlags()
    assert.throws(() => flags.tracker(flags.variant('nope', {}, 'x')), { code: 'FLAG_NOT_FOUND' })
    const v = flags.variant('bot', {})
    assert.throws(() => flags.tracker({ ...v, id: 'zzz' }), { code: 'INVALID_ARGUMENT' })
    assert.throws(() => flags.tracker(null), { code: 'INVALID_ARGUMENT' })
  })

  test('feedback attaches to a finished run by id; unknown runs give false', async () => {
    const flags = botFlags()
    const events = []
    flags.onEvent((e) => events.push(e))
    const r = await flags.call('bot', {}, async () => 'hi')
    assert.equal(flags.feedback(r.runId, { score: 1, quality: 0.8 }), true)
    // The first score and the first quality of a run count; a replay counts nothing.
    assert.equal(flags.feedback(r.runId, { score: -1 }), false)
    assert.equal(flags.feedback('0'.repeat(32), { score: 1 }), false)
    assert.throws(() => flags.feedback(r.runId, { score: 'good' }), { code: 'INVALID_ARGUMENT' })
    // NaN, infinities and out-of-range values are refused before anything counts.
    const r2 = await flags.call('bot', {}, async () => 'hi')
    for (const bad of [{ quality: NaN }, { quality: -1e300 }, { quality: 1.5 }, { score: Infinity }, { score: -2 }]) {
      assert.throws(() => flags.feedback(r2.runId, bad), { code: 'INVALID_ARGUMENT' })
    }
    const m = flags.metrics().bot.a
    assert.equal(m.feedback.count, 1)
    assert.equal(m.feedback.mean, 1)
    assert.equal(m.quality.count, 1)
    const fb = events.filter((e) => e.type === 'feedback')
    assert.equal(fb.length, 1)
    assert.equal(fb[0].run_id, r.runId)
    assert.equal(fb[0].variant, 'a')
  })
})

describe('metrics and events', () => {
  test('200 concurrent calls all resolve, and the metrics count every attempt', async () => {
    const flags = botFlags({ rules: [{ id: 'split', split: [{ variant: 'a', percent: 50 }, { variant: 'b', percent: 50 }] }] })
    let seq = 0
    const fn = async (variant) => {
      const n = seq++
      await sleep(n % 7)
      if (n % 5 === 0) throw Object.assign(new Error('overloaded'), { status: 529 })
      return `${variant.id}:${n}`
    }
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => flags.call('bot', { user_id: `user-${i}` }, fn)))
    assert.equal(results.length, 200)
    assert.equal(new Set(results.map((r) => r.runId)).size, 200, 'run ids are unique')
    const expected = {}
    for (const r of results) {
      assert.ok(typeof r.value === 'string' || r.variant.id === 'human')
      for (const a of r.attempts) {
        const e = (expected[a.variant] ??= { requests: 0, errors: 0 })
        e.requests++
        if (a.outcome === 'error') e.errors++
      }
    }
    const metrics = flags.metrics().bot
    for (const [variant, e] of Object.entries(expected)) {
      assert.equal(metrics[variant].requests, e.requests, `${variant} requests`)
      assert.equal(metrics[variant].errors, e.errors, `${variant} errors`)
      assert.equal(metrics[variant].errors_by_kind.server, e.errors)
    }
    const total = Object.values(expected).reduce((n, e) => n + e.requests, 0)
    assert.ok(total >= 200)
    assert.ok(expected.a.requests > 50 && expected.b.requests > 50, 'both split arms were called')
  })

  test('metricsText has one requests_total line per flag, variant and segment (no total beside them)', async () => {
    const flags = botFlags()
    const { fn } = provider({ a: { fail: new Error('x') } })
    for (let i = 0; i < 3; i++) await flags.call('bot', {}, fn)
    await flags.call('bot', { segment: 'beta' }, fn)
    const text = flags.metricsText()
    assert.match(text, /^flagrail_requests_total\{flag="bot",variant="a",segment="_none"\} 3$/m)
    assert.match(text, /^flagrail_requests_total\{flag="bot",variant="a",segment="beta"\} 1$/m)
    assert.match(text, /^flagrail_requests_total\{flag="bot",variant="b",segment="_none"\} 3$/m)
    assert.doesNotMatch(text, /^flagrail_requests_total\{flag="bot",variant="a"\}/m)
    assert.match(text, /^flagrail_errors_total\{flag="bot",variant="a",segment="_none",kind="other"\} 3$/m)
    assert.match(text, /^# TYPE flagrail_requests_total counter$/m)
    assert.match(text, /^flagrail_document_info\{revision="[^"]*"\} 1$/m)
    assert.match(text, /^flagrail_reloads_rejected_total 0$/m)
  })

  test('events go to a JSON-lines file (writeEvents and fromFile({ events }))', async () => {
    const dir = tmpdir()
    const doc = path.join(dir, 'flags.json')
    fs.writeFileSync(
      doc,
      JSON.stringify({ revision: 'file-1', flags: { bot: { variants: { a: {}, b: {}, human: { ai: false } }, default: 'a', fallback: ['b', 'human'] } } }),
    )
    const eventsFile = path.join(dir, 'events.jsonl')
    const flags = Flags.fromFile(doc, { reload: false, events: eventsFile })
    const r = await flags.call('bot', { user_id: 'u1' }, async (v) => {
      if (v.id === 'a') throw new Reject('meh')
      return new Output('ok', { inputTokens: 3, outputTokens: 4 })
    })
    const other = path.join(dir, 'more.jsonl')
    flags.writeEvents(other)
    flags.feedback(r.runId, { score: 1 })
    const lines = fs.readFileSync(eventsFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
    assert.deepEqual(
      lines.map((e) => [e.type, e.variant, e.outcome ?? null, e.error_kind ?? null]),
      [
        ['exposure', 'a', null, null],
        ['outcome', 'a', 'error', 'rejected'],
        ['outcome', 'b', 'success', null],
        ['feedback', 'b', null, null],
      ],
    )
    for (const e of lines) {
      assert.equal(e.run_id, r.runId)
      assert.equal(e.revision, 'file-1')
      assert.equal(e.flag, 'bot')
      assert.match(e.time, /^\d{4}-\d\d-\d\dT/)
    }
    assert.equal(lines[2].input_tokens, 3)
    assert.equal(lines[2].fallback, true)
    assert.equal(lines[1].unit, 'u1')
    const more = fs.readFileSync(other, 'utf8').trimEnd().split('\n')
    assert.equal(more.length, 1, 'a second file gets the events from then on')
    assert.throws(() => flags.writeEvents(path.join(dir, 'missing', 'x.jsonl')), { code: 'SOURCE_UNREACHABLE' })
    assert.throws(() => Flags.fromFile(doc, { reload: false, events: path.join(dir, 'missing', 'x.jsonl') }), {
      code: 'SOURCE_UNREACHABLE',
    })
    flags.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test('hashUnits replaces unit ids in events by a keyed hash', async () => {
    const flags = botFlags()
    const events = []
    flags.onEvent((e) => events.push(e))
    flags.hashUnits('secret key')
    await flags.call('bot', { user_id: 'u1' }, async () => 1)
    const hashed = events[0].unit
    assert.match(hashed, /^h:[0-9a-f]{32}$/)
    flags.hashUnits(Buffer.from('secret key'))
    await flags.call('bot', { user_id: 'u1' }, async () => 1)
    assert.equal(events.at(-1).unit, hashed, 'the same key as bytes hashes the same')
    flags.hashUnits(null)
    await flags.call('bot', { user_id: 'u1' }, async () => 1)
    assert.equal(events.at(-1).unit, 'u1')
    assert.throws(() => flags.hashUnits(''), { code: 'INVALID_ARGUMENT' })
    assert.throws(() => flags.hashUnits(42), { code: 'INVALID_ARGUMENT' })
  })

  test('onEvent: frozen events before the call returns, unsubscribe, throwing listeners warn', async () => {
    const flags = botFlags()
    const seen = []
    const off = flags.onEvent((e) => seen.push(e))
    flags.onEvent(() => {
      throw new Error('listener bug')
    })
    const warnings = []
    const onWarning = (w) => warnings.push(w)
    process.on('warning', onWarning)
    const r = await flags.call('bot', {}, async () => 1)
    assert.deepEqual(
      seen.map((e) => e.type),
      ['exposure', 'outcome'],
    )
    assert.ok(Object.isFrozen(seen[0]))
    assert.equal(r.value, 1, 'a throwing listener does not fail the call')
    off()
    await flags.call('bot', {}, async () => 1)
    assert.equal(seen.length, 2)
    await sleep(10)
    process.off('warning', onWarning)
    assert.ok(warnings.some((w) => /listener bug/.test(w.message)))
    assert.throws(() => flags.onEvent('nope'), { code: 'INVALID_ARGUMENT' })
  })
})

describe('guardrails', () => {
  test('an always-failing candidate trips its guardrail: variant() falls back, status and metrics show it', async () => {
    const flags = Flags.fromObject({
      revision: 'guard-1',
      flags: {
        bot: {
          bucket_by: 'user_id',
          variants: { candidate: { model: 'new-model' }, stable: { model: 'old-model' }, human: { ai: false } },
          default: 'stable',
          rules: [{ id: 'canary', split: [{ variant: 'candidate', percent: 50 }, { variant: 'stable', percent: 50 }] }],
          fallback: ['stable', 'human'],
          guardrails: [{ metric: 'error_rate', max: 0.05, min_samples: 20, action: 'fallback' }],
        },
      },
    })
    const events = []
    flags.onEvent((e) => events.push(e))
    const users = []
    for (let i = 0; users.length < 40; i++) {
      const user = { user_id: `user-${i}` }
      if (flags.variant('bot', user).id === 'candidate') users.push(user)
    }
    const fn = async (variant) => {
      if (variant.id === 'candidate') throw Object.assign(new Error('overloaded'), { status: 503 })
      return 'fine'
    }
    let calls = 0
    while (flags.variant('bot', users[0]).reason !== 'GUARDRAIL' && calls < 40) {
      const r = await flags.call('bot', users[calls], fn)
      assert.equal(r.value, 'fine')
      calls++
    }
    assert.ok(calls >= 20 && calls <= 25, `tripped after ${calls} calls`)
    for (const user of users) {
      const v = flags.variant('bot', user)
      assert.equal(v.reason, 'GUARDRAIL')
      assert.equal(v.id, 'stable')
      assert.equal(v.ruleId, 'canary')
    }
    // A call for a candidate user now goes straight to stable.
    const after = await flags.call('bot', users[30], fn)
    assert.equal(after.variant.id, 'stable')
    assert.equal(after.assigned, 'stable')
    assert.equal(after.attempts.length, 1)
    const status = flags.status()
    assert.equal(status.guardrails.length, 1)
    assert.equal(status.guardrails[0].variant, 'candidate')
    assert.equal(status.guardrails[0].action, 'fallback')
    const metrics = flags.metrics().bot
    assert.equal(metrics.candidate.requests, calls)
    assert.equal(metrics.candidate.errors, calls)
    assert.equal(metrics.candidate.errors_by_kind.server, calls)
    assert.equal(metrics.stable.requests, calls + 1)
    assert.equal(metrics.stable.errors, 0)
    assert.equal(metrics.candidate.guardrails.error_rate.state, 'tripped')
    const trip = events.find((e) => e.type === 'guardrail_trip')
    assert.ok(trip, 'a guardrail_trip event was delivered')
    assert.equal(trip.variant, 'candidate')
    assert.equal(trip.metric, 'error_rate')
    assert.equal(trip.action, 'fallback')
    assert.equal(flags.explain('bot', users[0]).reason, 'GUARDRAIL')
    assert.match(flags.metricsText(), /flagrail_requests_total\{flag="bot",variant="candidate",segment="[^"]+"\} \d+/)
  })

  test('after the cooldown the guardrail is half-open; healthy probes close it', async () => {
    const flags = Flags.fromObject({
      flags: {
        bot: {
          variants: { candidate: { model: 'new-model' }, stable: { model: 'old-model' }, human: { ai: false } },
          default: 'candidate',
          fallback: ['stable', 'human'],
          guardrails: [{ metric: 'error_rate', max: 0.05, min_samples: 20, action: 'fallback', cooldown: '1s', probe_percent: 100 }],
        },
      },
    })
    const events = []
    flags.onEvent((e) => events.push(e.type))
    const failing = async (variant) => {
      if (variant.id === 'candidate') throw new Reject('wrong')
      return 'fine'
    }
    for (let i = 0; i < 20; i++) await flags.call('bot', { user_id: `u${i}` }, failing)
    assert.equal(flags.variant('bot', { user_id: 'x' }).reason, 'GUARDRAIL')
    assert.equal(flags.status().guardrails[0].state, 'tripped')
    await sleep(1100)
    assert.equal(flags.status().guardrails[0].state, 'half_open')
    assert.equal(flags.variant('bot', { user_id: 'x' }).id, 'candidate', 'every unit probes at probe_percent 100')
    for (let i = 0; i < 20; i++) {
      const r = await flags.call('bot', { user_id: `p${i}` }, async () => 'fine')
      assert.equal(r.variant.id, 'candidate')
    }
    assert.deepEqual(flags.status().guardrails, [])
    assert.equal(flags.variant('bot', { user_id: 'x' }).reason, 'DEFAULT')
    assert.deepEqual(events.filter((t) => t.startsWith('guardrail_')), ['guardrail_trip', 'guardrail_probe', 'guardrail_recover'])
  })

  test('a guardrail whose action is kill reads KILLED with kill source guardrail', async () => {
    const flags = Flags.fromObject({
      flags: {
        bot: {
          variants: { candidate: {}, human: { ai: false } },
          default: 'candidate',
          kill: { active: false, serve: 'human' },
          guardrails: [{ metric: 'error_rate', max: 0.05, min_samples: 20, action: 'kill' }],
        },
      },
    })
    for (let i = 0; i < 20; i++) {
      const failing = flags.call('bot', { user_id: `u${i}` }, async () => {
        throw new Error('down')
      })
      await assert.rejects(failing, { code: 'ALL_ATTEMPTS_FAILED' })
    }
    const v = flags.variant('bot', { user_id: 'u1' })
    assert.equal(v.reason, 'KILLED')
    assert.equal(v.killSource, 'guardrail')
    assert.equal(v.id, 'human')
  })
})
