'use strict'
// `call` when the caller makes a mistake or gives up: odd thrown values are still outcomes
// with a readable text, a caller's AbortSignal cancels the chain (recorded as cancelled, its
// budget reservation given back), a shadow never runs before the served answer, and the texts
// of failed attempts are the core's (the same as Python's, tests/python/test_call_safety.py).
// No assertion depends on how long something took.

const assert = require('node:assert/strict')
const { describe, test } = require('node:test')

const { Flags, FlagrailError, Output, Reject } = require('..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function chainFlags(variantA) {
  return Flags.fromObject({
    revision: 'r1',
    flags: {
      bot: {
        variants: { a: { model: 'm-a', ...variantA }, b: { model: 'm-b' }, human: { ai: false } },
        default: 'a',
        fallback: ['b', 'human'],
      },
    },
  })
}

function budgetFlags() {
  return Flags.fromObject({
    revision: 'b1',
    flags: {
      chat: {
        variants: { opus: { max_tokens: 1000, cost_per_1k_output_tokens: 0.5 }, human: { ai: false } },
        default: 'opus',
        fallback: ['human'],
        budgets: [{ id: 'cap', max_cost: 1.0, window: '1h', action: { serve: 'human' } }],
      },
    },
  })
}

const USER = { user_id: 'u-1' }

function busy(ms) {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // blocks the event loop, as synchronous work in a shadow would
  }
}

describe('call: odd thrown values are outcomes, never crashes', () => {
  test('a rejection with a revoked Proxy moves on to the fallbacks', async () => {
    const flags = chainFlags()
    const result = await flags.call('bot', USER, async (v) => {
      if (v.id === 'a') {
        const { proxy, revoke } = Proxy.revocable({}, {})
        revoke()
        throw proxy
      }
      return `from ${v.id}`
    })
    assert.equal(result.value, 'from b')
    assert.deepEqual(
      result.attempts.map((a) => [a.variant, a.errorKind, a.error]),
      [
        ['a', 'other', 'an error that cannot be shown'],
        ['b', null, null],
      ],
    )
  })

  test('a thrown plain object is shown by its contents, not "[object Object]"', async () => {
    const flags = chainFlags()
    const result = await flags.call('bot', USER, async (v) => {
      if (v.id === 'a') throw { status: 503, detail: 'upstream overloaded' }
      return 'ok'
    })
    const [failed] = result.attempts
    assert.equal(failed.errorKind, 'server')
    assert.equal(failed.error, '{"status":503,"detail":"upstream overloaded"}')
  })
})

describe("errors that are the request's fault", () => {
  test('fall back without counting against the variant', async () => {
    const flags = Flags.fromObject({
      flags: {
        bot: {
          variants: { a: {}, b: {}, human: { ai: false } },
          default: 'a',
          fallback: ['b', 'human'],
          guardrails: [{ metric: 'error_rate', max: 0.05, min_samples: 20, action: 'fallback', variants: ['a'] }],
        },
      },
    })
    const answer = async (v) => {
      if (v.id === 'a') {
        const err = new Error("This model's maximum context length is 8192 tokens; your messages resulted in 9000")
        err.status = 400
        throw err
      }
      return `from ${v.id}`
    }
    for (let i = 0; i < 60; i++) {
      const r = await flags.call('bot', { user_id: `u${i}` }, answer)
      assert.deepEqual([r.variant.id, r.attempts[0].errorKind], ['b', 'invalid_request'])
    }
    assert.equal(flags.variant('bot', USER).reason, 'DEFAULT', 'the guardrail did not trip')
    const a = flags.metrics().bot.a
    assert.equal(a.errors_by_kind.invalid_request, 60)
    // The guardrail saw none of them (a variant it never observed has no entry yet).
    assert.equal(a.guardrails?.error_rate?.samples ?? 0, 0)
  })
})

describe('evidence that cannot be poisoned', () => {
  for (const bad of [NaN, Infinity, -1, -1e300]) {
    test(`usage ${bad} is refused before anything is recorded`, () => {
      const flags = chainFlags()
      assert.throws(() => new Output('x', { cost: bad }), { code: 'INVALID_ARGUMENT' })
      const tracker = flags.tracker(flags.variant('bot', USER), USER)
      assert.throws(() => tracker.success({ latencyMs: bad }), { code: 'INVALID_ARGUMENT' })
      assert.throws(() => tracker.error('server', { cost: bad }), { code: 'INVALID_ARGUMENT' })
      assert.equal(flags.metrics().bot, undefined, 'nothing was recorded')
      assert.equal(tracker.success({ latencyMs: 12.5, cost: 0.25 }), true, 'still reportable, once')
      const a = flags.metrics().bot.a
      assert.deepEqual([a.requests, a.errors, a.cost], [1, 0, 0.25])
    })
  }
})

describe('token counts are checked by the core', () => {
  for (const [bad, shown] of [[-1, '-1'], [1.5, '1.5'], [2 ** 53, '9007199254740992'], [2 ** 70, '1180591620717411300000'], [NaN, 'NaN']]) {
    test(`tokens ${bad} are refused with the core's message before anything is recorded`, () => {
      const flags = chainFlags()
      assert.throws(() => new Output('x', { inputTokens: bad }), {
        code: 'INVALID_ARGUMENT',
        message: `input_tokens must be a whole number from 0 to 9007199254740991, got ${shown}`,
      })
      const tracker = flags.tracker(flags.variant('bot', USER), USER)
      assert.throws(() => tracker.success({ inputTokens: bad }), { code: 'INVALID_ARGUMENT', message: /^input_tokens must be a whole number/ })
      assert.throws(() => tracker.error('server', { outputTokens: bad }), { code: 'INVALID_ARGUMENT', message: /^output_tokens must be a whole number/ })
      assert.equal(flags.metrics().bot, undefined, 'nothing was recorded')
      assert.equal(tracker.success({ inputTokens: 2 ** 53 - 1, outputTokens: 0 }), true, 'the bounds are accepted')
      assert.equal(flags.metrics().bot.a.requests, 1)
    })
  }
  test('a token count that is not a number is refused', () => {
    assert.throws(() => new Output('x', { outputTokens: '5' }), { code: 'INVALID_ARGUMENT' })
  })
})

describe('call: one text for failed attempts (the core decides)', () => {
  test('Name: message, cut at 1,000 characters', async () => {
    const flags = chainFlags()
    const result = await flags.call('bot', USER, async (v) => {
      if (v.id === 'a') throw new TypeError('bad json')
      throw new RangeError('é'.repeat(1500))
    })
    const [first, second] = result.attempts
    assert.equal(first.error, 'TypeError: bad json')
    assert.equal(second.error, 'RangeError: ' + 'é'.repeat(1000 - 'RangeError: '.length) + '…')
    const rejected = await flags.call('bot', USER, async (v) => {
      if (v.id === 'a') throw new Reject('no citation')
      return 'ok'
    })
    assert.equal(rejected.attempts[0].error, 'Reject: no citation')
  })

  test('an unknown error kind names every kind', () => {
    const flags = chainFlags()
    const tracker = flags.tracker(flags.variant('bot', USER), USER)
    assert.throws(
      () => tracker.error('slow'),
      (err) => {
        assert.ok(err instanceof FlagrailError)
        assert.equal(err.code, 'INVALID_ARGUMENT')
        assert.equal(
          err.message,
          'unknown error kind "slow"; expected one of: timeout, rate_limit, server, content_policy, rejected, other, invalid_request, threads_busy',
        )
        return true
      },
    )
  })
})

describe('call: a caller AbortSignal', () => {
  test('cancels the attempt in flight and the chain, gives the budget back, records it', async () => {
    const flags = budgetFlags()
    const events = []
    flags.onEvent((e) => events.push(e))
    const controller = new AbortController()
    const seen = []
    const hang = (variant, { signal }) =>
      new Promise((resolve, reject) => {
        seen.push(variant.id)
        signal.addEventListener('abort', () => reject(signal.reason))
      })
    const first = flags.call('chat', USER, hang, { signal: controller.signal })
    const second = flags.call('chat', USER, hang, { signal: controller.signal })
    await sleep(10)
    assert.equal(flags.variant('chat', USER).reason, 'BUDGET', 'two reservations of $0.50 fill it')
    const reason = new Error('the client went away')
    controller.abort(reason)
    await assert.rejects(first, (err) => err === reason)
    await assert.rejects(second, (err) => err === reason)
    assert.deepEqual(seen, ['opus', 'opus'], 'no fallback was tried')
    assert.equal(flags.variant('chat', USER).reason, 'DEFAULT', 'the reservations are back')
    const outcomes = events.filter((e) => e.type === 'outcome')
    assert.deepEqual(
      outcomes.map((e) => [e.variant, e.outcome, e.error_kind]),
      [
        ['opus', 'cancelled', null],
        ['opus', 'cancelled', null],
      ],
    )
    assert.equal(flags.metrics().chat?.opus?.requests ?? 0, 0)
  })

  test('an already aborted signal starts nothing', async () => {
    const flags = chainFlags()
    let called = false
    const reason = new Error('gone')
    await assert.rejects(
      flags.call(
        'bot',
        USER,
        async () => {
          called = true
        },
        { signal: AbortSignal.abort(reason) },
      ),
      (err) => err === reason,
    )
    assert.equal(called, false)
  })

  test('a signal that is not an AbortSignal is refused', async () => {
    const flags = chainFlags()
    await assert.rejects(
      flags.call('bot', USER, async () => 'x', { signal: {} }),
      (err) => err.code === 'INVALID_ARGUMENT',
    )
  })
})

describe('call: a shadow never runs before the served answer', () => {
  test('a shadow that blocks synchronously starts after the call has resolved', async () => {
    const flags = Flags.fromObject({
      flags: {
        bot: {
          variants: { stable: {}, cand: {} },
          default: 'stable',
          shadow: { variant: 'cand', percent: 100 },
        },
      },
    })
    const order = []
    const result = await flags.call('bot', USER, async (v) => {
      if (v.isShadow) {
        order.push('shadow starts')
        busy(50)
        return 'shadow'
      }
      order.push('served starts')
      await sleep(5)
      order.push('served ends')
      return 'served'
    })
    order.push('call resolved')
    assert.equal(result.shadow, 'cand')
    for (let i = 0; i < 200 && !order.includes('shadow starts'); i++) await sleep(5)
    assert.deepEqual(order, ['served starts', 'served ends', 'call resolved', 'shadow starts'])
  })
})

describe('call: nesting past the core limit is a programming error', () => {
  test('a call made synchronously inside fn, 101 deep, rejects with CALL_DEPTH_EXCEEDED, recorded as cancelled', async () => {
    const flags = Flags.fromObject({ flags: { bot: { variants: { a: {} }, default: 'a' } } })
    const outcomes = []
    flags.onEvent((e) => {
      if (e.type === 'outcome') outcomes.push(e)
    })
    let depth = 0
    const nest = () => {
      depth++
      return flags.call('bot', USER, nest).then((r) => r.value)
    }
    await assert.rejects(nest(), (err) => {
      assert.ok(err instanceof FlagrailError, String(err))
      assert.equal(err.code, 'CALL_DEPTH_EXCEEDED')
      assert.match(err.message, /nested more than 100 deep/)
      return true
    })
    assert.equal(depth, 101)
    // The 100 enclosing calls each ended with it: one cancelled attempt each, no error counted.
    assert.equal(outcomes.length, 100)
    assert.deepEqual([...new Set(outcomes.map((e) => e.outcome))], ['cancelled'])
    assert.equal(flags.metrics().bot?.a?.errors ?? 0, 0)
  })

  test('calls side by side, or after an await, are not nested', async () => {
    const flags = Flags.fromObject({ flags: { bot: { variants: { a: {} }, default: 'a' } } })
    const results = await Promise.all(Array.from({ length: 300 }, () => flags.call('bot', USER, async (v) => v.id)))
    assert.equal(results.length, 300)
    let depth = 0
    const chain = async () => {
      await sleep(0)
      if (++depth >= 150) return 'bottom'
      return (await flags.call('bot', USER, chain)).value
    }
    assert.equal(await chain(), 'bottom')
  })
})
