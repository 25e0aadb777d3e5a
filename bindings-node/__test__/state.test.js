'use strict'
// State that changes decisions, through the real addon: sticky conversations (in-memory and
// custom pin stores), budgets (cost circuit breakers, including the bound on concurrent calls
// against a nearly spent budget), shadow traffic beside `call`, and cache keys. The only
// stand-ins are the provider (a local async function) and the pin stores (Maps).
//
// No assertion depends on wall-clock speed: waits are bounded only so that a regression fails
// instead of hanging.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { describe, test } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')

const { Flags, FlagrailError, Output, Variant } = require('..')

/** Liveness bound for waits on events (never a pass/fail on speed). */
const BOUND_MS = 10000

/** Resolves with the first event `predicate` accepts (from now on), or rejects after BOUND_MS. */
function nextEvent(flags, predicate) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop()
      reject(new Error('the expected event never came'))
    }, BOUND_MS)
    const stop = flags.onEvent((event) => {
      if (!predicate(event)) return
      clearTimeout(timer)
      stop()
      resolve(event)
    })
  })
}

// ---- Sticky conversations ------------------------------------------------------------------

const RAMP_START = '2026-11-21T09:00:00Z'
const DAY_1 = '2026-11-21T10:00:00Z' // the ramp is at 10 %
const DAY_2 = '2026-11-22T10:00:00Z' // the ramp is at 100 %

/** `chat`: a candidate ramped 10 % → 100 % after a day, sticky by conversation_id. */
function rampDocument(ttl = '24h', extra = {}) {
  return {
    revision: 'sticky-1',
    flags: {
      chat: {
        bucket_by: 'user_id',
        variants: { stable: { model: 'm-stable' }, candidate: { model: 'm-candidate' }, human: { ai: false } },
        default: 'stable',
        kill: { active: false, serve: 'human' },
        rules: [
          {
            id: 'canary',
            ramp: { variant: 'candidate', baseline: 'stable', start: RAMP_START, steps: [{ percent: 10, hold: '24h' }, { percent: 100 }] },
          },
        ],
        sticky: { by: 'conversation_id', ttl },
        ...extra,
      },
    },
  }
}

/** A user outside the 10 % of the ramp on day 1 (so the ramp moves them on day 2). */
function stableUser(flags) {
  for (let i = 0; ; i++) {
    const user = `user-${i}`
    if (flags.variant('chat', { user_id: user }, null, { at: DAY_1 }).id === 'stable') return user
  }
}

/** A pin store over a Map that records every call, with TTLs honoured on read. */
function mapStore() {
  const map = new Map()
  const calls = []
  return {
    map,
    calls,
    get(key) {
      calls.push(['get', key])
      const entry = map.get(key)
      if (entry === undefined || entry.expires <= Date.now()) return null
      return entry.value
    },
    set(key, value, ttlSeconds) {
      calls.push(['set', key, value, ttlSeconds])
      map.set(key, { value, expires: Date.now() + ttlSeconds * 1000 })
    },
    delete(key) {
      calls.push(['delete', key])
      map.delete(key)
    },
  }
}

describe('sticky conversations (in-memory pins)', () => {
  test('a pin holds while the ramp moves; another conversation and no conversation follow the ramp', () => {
    const flags = Flags.fromObject(rampDocument())
    const user = stableUser(flags)
    const first = flags.variant('chat', { user_id: user, conversation_id: 'c1' }, null, { at: DAY_1 })
    assert.deepEqual([first.id, first.reason, first.ruleId], ['stable', 'SPLIT', 'canary'])
    assert.equal(flags.status().sticky_pins, 1)
    const later = flags.variant('chat', { user_id: user, conversation_id: 'c1' }, null, { at: DAY_2 })
    assert.deepEqual([later.id, later.reason, later.ruleId, later.bucket], ['stable', 'STICKY', null, null])
    assert.equal(flags.variant('chat', { user_id: user, conversation_id: 'c2' }, null, { at: DAY_2 }).id, 'candidate')
    assert.equal(flags.variant('chat', { user_id: user }, null, { at: DAY_2 }).id, 'candidate')
    // The fast path (no options) reads and writes the same pins.
    assert.equal(flags.variant('chat', { user_id: user, conversation_id: 'c1' }).reason, 'STICKY')
    const explained = flags.explain('chat', { user_id: user, conversation_id: 'c1' }, { at: DAY_2 })
    assert.equal(explained.reason, 'STICKY')
    assert.deepEqual(explained.steps[0], { step: 'sticky', conversation: 'c1', pinned: 'stable', served: true })
    assert.deepEqual(flags.status().sticky_store, { kind: 'memory', errors: 0, last_error: null })
  })

  test('a pin expires at its TTL', async () => {
    const flags = Flags.fromObject({
      flags: { chat: { variants: { a: {}, b: {} }, default: 'a', sticky: { ttl: '1s' } } },
    })
    const ctx = { conversation_id: 'c1' }
    assert.equal(flags.variant('chat', ctx).reason, 'DEFAULT')
    assert.equal(flags.variant('chat', ctx).reason, 'STICKY')
    await sleep(1100)
    assert.equal(flags.variant('chat', ctx).reason, 'DEFAULT', 'the pin expired: a fresh decision (and a new pin)')
    assert.equal(flags.variant('chat', ctx).reason, 'STICKY')
  })

  test('a kill overrides a pin, and the pin serves again after unkill', () => {
    const flags = Flags.fromObject(rampDocument())
    const user = stableUser(flags)
    const ctx = { user_id: user, conversation_id: 'k1' }
    assert.equal(flags.variant('chat', ctx, null, { at: DAY_1 }).id, 'stable')
    flags.kill('chat', { reason: 'drill' })
    const killed = flags.variant('chat', ctx, null, { at: DAY_2 })
    assert.deepEqual([killed.id, killed.reason, killed.killSource], ['human', 'KILLED', 'local-flag'])
    flags.unkill('chat')
    const back = flags.variant('chat', ctx, null, { at: DAY_2 })
    assert.deepEqual([back.id, back.reason], ['stable', 'STICKY'])
  })

  test('a guardrail trip on the pinned variant breaks the pin', async () => {
    const flags = Flags.fromObject({
      flags: {
        bot: {
          bucket_by: 'user_id',
          variants: { candidate: { model: 'new' }, stable: { model: 'old' }, human: { ai: false } },
          default: 'candidate',
          fallback: ['stable', 'human'],
          sticky: { ttl: '1h' },
          guardrails: [{ metric: 'error_rate', max: 0.05, min_samples: 20, action: 'fallback' }],
        },
      },
    })
    const pinned = { user_id: 'u-pinned', conversation_id: 'p1' }
    assert.equal(flags.variant('bot', pinned).id, 'candidate')
    assert.equal(flags.variant('bot', pinned).reason, 'STICKY')
    const failing = async (variant) => {
      if (variant.id === 'candidate') throw Object.assign(new Error('overloaded'), { status: 503 })
      return 'fine'
    }
    // Calls without a conversation pin nothing; 20 failures trip the guardrail.
    for (let i = 0; i < 20; i++) await flags.call('bot', { user_id: `u${i}` }, failing)
    assert.equal(flags.status().guardrails.length, 1)
    const explained = flags.explain('bot', pinned)
    assert.equal(explained.steps[0].step, 'sticky')
    assert.equal(explained.steps[0].served, false)
    assert.match(explained.steps[0].broken, /guardrail/)
    const v = flags.variant('bot', pinned)
    assert.deepEqual([v.id, v.reason], ['stable', 'GUARDRAIL'])
  })

  test('a reload that removes the pinned variant breaks the pin', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-state-'))
    const file = path.join(dir, 'flags.json')
    const doc = (revision, variants, def) => JSON.stringify({ revision, flags: { chat: { variants, default: def, sticky: { ttl: '1h' } } } })
    fs.writeFileSync(file, doc('r1', { a: {}, b: {} }, 'a'))
    const flags = Flags.fromFile(file, { reload: false })
    const ctx = { conversation_id: 'g1' }
    assert.equal(flags.variant('chat', ctx).id, 'a')
    assert.equal(flags.variant('chat', ctx).reason, 'STICKY')
    fs.writeFileSync(`${file}.tmp`, doc('r2-without-a', { b: {}, c: {} }, 'b'))
    fs.renameSync(`${file}.tmp`, file)
    assert.equal(flags.reloadIfChanged(), true)
    const explained = flags.explain('chat', ctx)
    assert.equal(explained.steps[0].served, false)
    assert.match(explained.steps[0].broken, /no longer exists/)
    const v = flags.variant('chat', ctx)
    assert.deepEqual([v.id, v.reason, v.revision], ['b', 'DEFAULT', 'r2-without-a'])
    assert.equal(flags.variant('chat', ctx).reason, 'STICKY', 'the fresh decision is pinned')
  })
})

test('a result too wide for the packed number is not evaluated twice (it may write a pin)', () => {
  // 300 variants: index 299 does not fit the packed number's 8 bits.
  const variants = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`v${i}`, { model: `m${i}` }]))
  const flags = Flags.fromObject({
    flags: {
      wide: { bucket_by: 'user_id', variants, default: 'v299', sticky: { ttl: '1h' }, shadow: { variant: 'v0', percent: 100 } },
    },
  })
  const ctx = { user_id: 'u1', conversation_id: 'w1' }
  const first = flags.variant('wide', ctx)
  assert.deepEqual([first.id, first.reason, first.shadow], ['v299', 'DEFAULT', 'v0'])
  const second = flags.variant('wide', ctx, null, { at: DAY_1 })
  assert.deepEqual([second.id, second.reason, second.shadow], ['v299', 'STICKY', 'v0'])
  assert.equal(flags.variant('wide', { user_id: 'u1', conversation_id: 'w2' }, null, { at: DAY_1 }).reason, 'DEFAULT')
  assert.equal(first.cacheKey(), flags.variant('wide', {}).cacheKey())
})

describe('sticky conversations (custom pin store)', () => {
  test('a Map-backed store shared by two handles: keys, values, TTLs; null restores memory', () => {
    const store = mapStore()
    const a = Flags.fromObject(rampDocument())
    const b = Flags.fromObject(rampDocument())
    a.usePinStore(store)
    b.usePinStore(store)
    const user = stableUser(a)
    const ctx = { user_id: user, conversation_id: 'shared-1' }
    const first = a.variant('chat', ctx, null, { at: DAY_1 })
    assert.deepEqual([first.id, first.reason], ['stable', 'SPLIT'])
    assert.deepEqual(store.calls, [
      ['get', 'flagrail/pin/chat/shared-1'],
      ['set', 'flagrail/pin/chat/shared-1', 'stable', 86400],
    ])
    // The other handle (another process, in production) sees the pin after the ramp moved.
    const other = b.variant('chat', ctx, null, { at: DAY_2 })
    assert.deepEqual([other.id, other.reason], ['stable', 'STICKY'])
    assert.deepEqual(store.calls.at(-1), ['get', 'flagrail/pin/chat/shared-1'], 'a STICKY read writes nothing')
    assert.equal(b.explain('chat', ctx, { at: DAY_2 }).reason, 'STICKY')
    // An integer conversation id is its decimal text.
    a.variant('chat', { user_id: user, conversation_id: 42 }, null, { at: DAY_1 })
    assert.ok(store.map.has('flagrail/pin/chat/42'))
    // The memory store was not used; a context without a conversation never touches the store.
    assert.equal(a.status().sticky_pins, 0)
    const before = store.calls.length
    a.variant('chat', { user_id: user })
    assert.equal(store.calls.length, before)
    assert.deepEqual(a.status().sticky_store, { kind: 'custom', errors: 0, last_error: null })
    // Flags without `sticky` never touch the store.
    a.usePinStore(null)
    assert.equal(a.status().sticky_store.kind, 'memory')
    assert.equal(a.variant('chat', ctx, null, { at: DAY_2 }).reason, 'SPLIT', 'memory holds no pin of shared-1')
    assert.equal(store.calls.length, before)
  })

  test('a pin broken while a budget serves is deleted from the store', async () => {
    const store = mapStore()
    const flags = Flags.fromObject({
      flags: {
        chat: {
          variants: { premium: { model: 'big' }, cheap: { model: 'small' } },
          default: 'premium',
          sticky: { ttl: '1h' },
          budgets: [{ id: 'per-user', per: 'user_id', max_requests: 1, window: '1h', action: { serve: 'cheap' } }],
        },
      },
    })
    flags.usePinStore(store)
    await flags.call('chat', { user_id: 'carol' }, async () => 'ok')
    store.map.set('flagrail/pin/chat/k9', { value: 'a-variant-that-is-gone', expires: Date.now() + 60000 })
    const v = flags.variant('chat', { user_id: 'carol', conversation_id: 'k9' })
    assert.deepEqual([v.id, v.reason, v.budget], ['cheap', 'BUDGET', 'per-user'])
    assert.deepEqual(store.calls.at(-1), ['delete', 'flagrail/pin/chat/k9'])
    assert.equal(store.map.has('flagrail/pin/chat/k9'), false)
  })

  test('an async store: call awaits it (the pin is written before fn runs); variant() cannot wait', async () => {
    const store = mapStore()
    // Every method acts only after a turn of the event loop, as a network store would.
    const later = () => new Promise((resolve) => setImmediate(resolve))
    const asyncStore = {
      get: async (key) => {
        await later()
        return store.get(key)
      },
      set: async (key, value, ttl) => {
        await later()
        store.set(key, value, ttl)
      },
      delete: async (key) => {
        await later()
        store.delete(key)
      },
    }
    const flags = Flags.fromObject(rampDocument('2h'))
    flags.usePinStore(asyncStore)
    const ctx = { user_id: 'user-1', conversation_id: 'async-1' }
    let pinnedWhenCalled
    const r = await flags.call('chat', ctx, async (variant) => {
      pinnedWhenCalled = store.map.get('flagrail/pin/chat/async-1')?.value
      return `from ${variant.id}`
    })
    assert.equal(pinnedWhenCalled, r.assigned, 'the pin was written before fn ran')
    assert.deepEqual(store.calls.at(-1), ['set', 'flagrail/pin/chat/async-1', r.assigned, 7200])
    const again = await flags.call('chat', ctx, async () => 'ok')
    assert.deepEqual([again.variant.id, again.variant.reason], [r.assigned, 'STICKY'])
    // variant() gets a Promise from get: a miss for that evaluation, counted, nothing written.
    const writes = store.calls.filter((c) => c[0] === 'set').length
    const v = flags.variant('chat', ctx)
    assert.notEqual(v.reason, 'STICKY')
    assert.equal(store.calls.filter((c) => c[0] === 'set').length, writes)
    const status = flags.status().sticky_store
    assert.equal(status.kind, 'custom')
    assert.equal(status.errors, 1)
    assert.match(status.last_error, /^get: .*Promise/)
  })

  test('a store that throws or rejects never fails an evaluation or a call; errors are counted', async () => {
    const flags = Flags.fromObject(rampDocument())
    flags.usePinStore({
      get() {
        throw new Error('redis down')
      },
      set() {
        throw new Error('unreachable')
      },
      delete() {},
    })
    const ctx = { user_id: 'user-1', conversation_id: 'x1' }
    const v = flags.variant('chat', ctx, null, { at: DAY_1 })
    assert.equal(v.reason, 'SPLIT')
    assert.equal(flags.explain('chat', ctx).reason, 'SPLIT')
    const r = await flags.call('chat', ctx, async () => 'still served')
    assert.equal(r.value, 'still served')
    let status = flags.status().sticky_store
    assert.equal(status.errors, 3, 'three failed reads; a failed read writes nothing')
    assert.equal(status.last_error, 'get: Error: redis down')

    const rejecting = Flags.fromObject(rampDocument())
    rejecting.usePinStore({
      get: async () => null,
      set: async () => {
        throw new Error('write refused')
      },
      delete: async () => {},
    })
    const served = await rejecting.call('chat', ctx, async () => 'ok')
    assert.equal(served.value, 'ok')
    status = rejecting.status().sticky_store
    assert.deepEqual([status.errors, status.last_error], [1, 'set: Error: write refused'])
    // An unusable answer from get is an error too, and the pin is ignored.
    rejecting.usePinStore({ get: () => 42, set() {}, delete() {} })
    assert.equal(rejecting.variant('chat', ctx, null, { at: DAY_1 }).reason, 'SPLIT')
    assert.match(rejecting.status().sticky_store.last_error, /^get: returned number/)
  })

  test('usePinStore checks its argument', () => {
    const flags = Flags.fromObject(rampDocument())
    assert.throws(() => flags.usePinStore({ get() {}, set() {} }), { code: 'INVALID_ARGUMENT' })
    assert.throws(() => flags.usePinStore('redis'), { code: 'INVALID_ARGUMENT' })
    flags.usePinStore(undefined)
    assert.equal(flags.status().sticky_store.kind, 'memory')
  })
})

// ---- Budgets -------------------------------------------------------------------------------

/** `chat` with per-user requests and a flag cost budget; a document-wide daily cost cap. */
function budgetDocument({ dailyCap = 100, hourly = 1.0, perUser = 3, hourlyAction = { serve: 'human' } } = {}) {
  return {
    revision: 'budgets-1',
    budgets: [{ id: 'daily-cap', max_cost: dailyCap, window: '1d', action: 'kill' }],
    flags: {
      chat: {
        bucket_by: 'user_id',
        variants: {
          opus: { model: 'opus', max_tokens: 1000, cost_per_1k_output_tokens: 0.01 },
          haiku: { model: 'haiku' },
          human: { ai: false, message: 'later' },
        },
        default: 'opus',
        kill: { active: false, serve: 'human' },
        budgets: [
          { id: 'per-user', per: 'user_id', max_requests: perUser, window: '1h', action: { serve: 'haiku' } },
          { id: 'feature-hourly', max_cost: hourly, window: '1h', action: hourlyAction },
        ],
      },
      other: { variants: { gpt: { model: 'gpt' }, human: { ai: false } }, default: 'gpt', kill: { active: false, serve: 'human' } },
      faq: { variants: { text: { ai: false } }, default: 'text' },
    },
  }
}

/** A provider reporting `outputTokens` per call. */
const reporting = (outputTokens) => async (variant) => new Output(`from ${variant.id}`, { outputTokens })

describe('budgets', () => {
  test('a user over max_requests is downgraded (reason BUDGET, budget id); others are not', async () => {
    const flags = Flags.fromObject(budgetDocument())
    const alice = { user_id: 'alice' }
    for (let i = 0; i < 3; i++) assert.equal((await flags.call('chat', alice, reporting(10))).variant.id, 'opus')
    const v = flags.variant('chat', alice)
    assert.deepEqual([v.id, v.reason, v.budget, v.ruleId, v.bucket], ['haiku', 'BUDGET', 'per-user', null, null])
    assert.equal(v.toJSON().budget, 'per-user')
    assert.equal(flags.variant('chat', { user_id: 'bob' }).reason, 'DEFAULT')
    assert.equal(flags.variant('chat', {}).reason, 'DEFAULT', 'a context without the unit is not limited')
    const r = await flags.call('chat', alice, reporting(10))
    assert.deepEqual([r.variant.id, r.variant.reason, r.variant.budget, r.assigned], ['haiku', 'BUDGET', 'per-user', 'haiku'])
    assert.equal(flags.explain('chat', alice).budget, 'per-user')
    const state = flags.status().budgets.find((b) => b.budget === 'per-user')
    assert.deepEqual([state.scopes, state.exhausted_scopes, state.spent_total], [1, 1, 4])
  })

  test('a flag cost budget serves its static variant once spent; events, status, metrics', async () => {
    const flags = Flags.fromObject(budgetDocument({ hourly: 0.02, perUser: 1000 }))
    const events = []
    flags.onEvent((e) => events.push(e))
    for (let i = 0; i < 2; i++) {
      const r = await flags.call('chat', { user_id: `u${i}` }, reporting(1000))
      assert.equal(r.attempts[0].cost, 0.01)
    }
    const r = await flags.call('chat', { user_id: 'u9' }, reporting(1000))
    assert.deepEqual([r.value, r.variant.id, r.variant.reason, r.variant.budget], [null, 'human', 'BUDGET', 'feature-hourly'])
    assert.equal(r.attempts.length, 0)
    const exhausted = events.filter((e) => e.type === 'budget_exhausted')
    assert.equal(exhausted.length, 1)
    assert.deepEqual(
      [exhausted[0].flag, exhausted[0].budget, exhausted[0].measure, exhausted[0].limit, exhausted[0].action],
      ['chat', 'feature-hourly', 'cost', 0.02, 'serve'],
    )
    const state = flags.status().budgets.find((b) => b.budget === 'feature-hourly')
    assert.deepEqual([state.flag, state.limit, state.window, state.exhausted, state.reserved], ['chat', 0.02, '1h', true, 0])
    assert.ok(Math.abs(state.spent - 0.02) < 1e-12)
    assert.equal(state.remaining, 0)
    assert.deepEqual(flags.metrics().$budgets, flags.status().budgets)
    const text = flags.metricsText()
    assert.match(text, /flagrail_budget_limit\{flag="chat",budget="feature-hourly",measure="cost"\} 0\.02/)
    assert.match(text, /flagrail_budget_exhausted_scopes\{flag="chat",budget="feature-hourly",measure="cost"\} 1/)
    assert.match(text, /flagrail_budget_spent\{flag="",budget="daily-cap",measure="cost"\} 0\.02/)
  })

  test('a document-wide daily cost cap kills every AI flag (kill source budget); static flags keep serving', async () => {
    const flags = Flags.fromObject(budgetDocument({ dailyCap: 0.01 }))
    await flags.call('chat', { user_id: 'u1' }, reporting(1000))
    for (const flag of ['chat', 'other']) {
      const v = flags.variant(flag, { user_id: 'u2' })
      assert.deepEqual([v.id, v.reason, v.killSource, v.budget], ['human', 'KILLED', 'budget', 'daily-cap'], flag)
    }
    assert.equal(flags.variant('faq', {}).reason, 'DEFAULT')
    const explained = flags.explain('other', {})
    assert.deepEqual([explained.reason, explained.kill_source, explained.budget], ['KILLED', 'budget', 'daily-cap'])
    const step = explained.steps.find((s) => s.step === 'budget')
    assert.deepEqual([step.budget, step.document_wide, step.exhausted], ['daily-cap', true, true])
    const r = await flags.call('other', {}, async () => 'never called')
    assert.deepEqual([r.value, r.variant.id, r.variant.killSource], [null, 'human', 'budget'])
  })

  test('1,000 concurrent calls against a nearly spent budget overshoot it by at most one reservation', async () => {
    // $1.00 per hour; each opus call reserves its estimate, 1000 tokens × $0.01/1k = $0.01, and
    // really costs 800 tokens = $0.008. Spend ~$0.95 first, then fire 1,000 calls at once.
    const LIMIT = 1.0
    const RESERVATION = 0.01
    const flags = Flags.fromObject(budgetDocument({ hourly: LIMIT, perUser: 1e9, hourlyAction: { serve: 'haiku' } }))
    const spent = () => flags.status().budgets.find((b) => b.budget === 'feature-hourly').spent
    let pre = 0
    while (spent() < 0.95) {
      await flags.call('chat', { user_id: `pre-${pre++}` }, reporting(800))
    }
    assert.ok(spent() < LIMIT, 'room is left before the burst')
    let inFlight = 0
    let maxInFlight = 0
    const fn = async (variant) => {
      if (variant.id !== 'opus') return new Output('cheap answer', { outputTokens: 800 })
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      await sleep(5)
      inFlight--
      return new Output('opus answer', { outputTokens: 800 })
    }
    const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => flags.call('chat', { user_id: `burst-${i}` }, fn)))
    const admitted = results.filter((r) => r.variant.id === 'opus').length
    const downgraded = results.filter((r) => r.variant.reason === 'BUDGET' && r.variant.budget === 'feature-hourly').length
    assert.equal(admitted + downgraded, 1000)
    assert.ok(admitted >= 1, 'the room left was used')
    assert.ok(downgraded >= 900, `most calls were downgraded (${downgraded})`)
    const state = flags.status().budgets.find((b) => b.budget === 'feature-hourly')
    assert.equal(state.reserved, 0, 'every reservation was settled')
    const opusCost = flags.metrics().chat.opus.cost
    assert.ok(state.spent <= LIMIT + RESERVATION + 1e-9, `spent ${state.spent} ≤ limit + one reservation`)
    assert.ok(state.spent <= LIMIT + maxInFlight * RESERVATION + 1e-9, `spent ${state.spent} ≤ limit + ${maxInFlight} in flight × reservation`)
    assert.ok(Math.abs(opusCost - state.spent) < 1e-9, 'the budget counted exactly what the budgeted variant cost')
  })
})

// ---- Shadow traffic ------------------------------------------------------------------------

/** `chat` serving `stable`, shadowing `candidate` for `percent` % of users. */
function shadowDocument({ percent = 50, cap, candidate = {} } = {}) {
  const shadow = { variant: 'candidate', percent }
  if (cap !== undefined) shadow.max_cost_per_hour = cap
  return {
    revision: 'shadow-1',
    flags: {
      chat: {
        bucket_by: 'user_id',
        variants: {
          stable: { model: 's' },
          candidate: { model: 'c', max_tokens: 1000, cost_per_1k_output_tokens: 0.01, ...candidate },
          human: { ai: false },
        },
        default: 'stable',
        kill: { active: false, serve: 'human' },
        shadow,
      },
    },
  }
}

function shadowedUser(flags, skip = 0) {
  for (let i = 0, found = 0; ; i++) {
    const ctx = { user_id: `user-${i}` }
    if (flags.variant('chat', ctx).shadow !== null && found++ === skip) return ctx
  }
}

describe('shadow traffic', () => {
  test('call returns the served result while the shadow is still running (no timing involved)', async () => {
    const flags = Flags.fromObject(shadowDocument())
    const user = shadowedUser(flags)
    let release
    const gate = new Promise((resolve) => {
      release = resolve
    })
    let safety
    let shadowSettled = false
    const calls = []
    const fn = async (variant, options) => {
      calls.push({ id: variant.id, isShadow: variant.isShadow, shadow: options.shadow, attempt: options.attempt })
      if (!options.shadow) return 'served answer'
      // Waits for the test to release it, which happens only after `call` resolved. Should
      // `call` wait for the shadow, the safety timer ends the wait and the test fails below.
      await Promise.race([gate, new Promise((resolve) => (safety = setTimeout(resolve, BOUND_MS)))])
      shadowSettled = true
      return 'shadow answer'
    }
    const shadowOutcome = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === true)
    const servedOutcome = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === false)
    const r = await flags.call('chat', user, fn)
    assert.equal(shadowSettled, false, 'call resolved before the shadow finished')
    assert.deepEqual([r.value, r.variant.id, r.shadow, r.fallbackUsed, r.attempts.length], ['served answer', 'stable', 'candidate', false, 1])
    assert.equal(r.variant.isShadow, false)
    assert.equal(r.variant.shadow, 'candidate')
    release()
    const [shadow, served] = await Promise.all([shadowOutcome, servedOutcome])
    clearTimeout(safety)
    assert.equal(shadowSettled, true)
    assert.deepEqual(
      calls.map((c) => [c.id, c.isShadow, c.shadow, c.attempt]),
      // The served attempt first: the shadow's starts only once the call has settled.
      [
        ['stable', false, false, 1],
        ['candidate', true, true, 1],
      ],
    )
    assert.equal(shadow.run_id, r.runId)
    assert.equal(served.run_id, r.runId)
    assert.deepEqual([shadow.variant, shadow.outcome, shadow.output], ['candidate', 'success', 'shadow answer'])
    assert.deepEqual([served.variant, served.outcome, served.output], ['stable', 'success', 'served answer'])
  })

  test('a throwing shadow leaves the served result and fallbackUsed unchanged; outputs as JSON', async () => {
    const flags = Flags.fromObject(shadowDocument())
    const user = shadowedUser(flags)
    const shadowOutcome = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === true)
    const servedOutcome = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === false)
    const r = await flags.call('chat', user, async (variant, options) => {
      if (options.shadow) throw Object.assign(new Error('candidate overloaded'), { status: 503 })
      return new Output({ answer: 42, parts: ['a', 1n] }, { outputTokens: 5 })
    })
    assert.deepEqual([r.variant.id, r.fallbackUsed, r.attempts.length, r.attempts[0].outcome, r.shadow], ['stable', false, 1, 'success', 'candidate'])
    assert.equal(r.value.answer, 42)
    const shadow = await shadowOutcome
    const served = await servedOutcome
    assert.deepEqual([shadow.outcome, shadow.error_kind, shadow.run_id, shadow.output], ['error', 'server', r.runId, undefined])
    // A value JSON cannot hold (a bigint inside) is recorded as its String() form.
    assert.equal(served.output, String({ answer: 42, parts: ['a', 1n] }))
    const metrics = flags.metrics().chat
    assert.equal(metrics.candidate.shadow_requests, 1)
    assert.equal(metrics.candidate.errors, 1)
    assert.equal(metrics.stable.errors, 0)
    // A shadow that throws synchronously is recorded the same way.
    const next = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === true)
    const again = await flags.call('chat', user, (variant, options) => {
      if (options.shadow) throw new Error('sync throw')
      return 'fine'
    })
    assert.equal(again.value, 'fine')
    assert.equal((await next).outcome, 'error')
  })

  test("the shadow honours its variant's timeout_ms with an AbortSignal", async () => {
    const flags = Flags.fromObject(shadowDocument({ candidate: { timeout_ms: 50 } }))
    const user = shadowedUser(flags)
    let signal
    const shadowOutcome = nextEvent(flags, (e) => e.type === 'outcome' && e.shadow === true)
    const r = await flags.call('chat', user, async (variant, options) => {
      if (!options.shadow) return 'fast'
      signal = options.signal
      assert.equal(options.timeoutMs, 50)
      await new Promise((resolve) => signal.addEventListener('abort', resolve))
      return 'too late'
    })
    assert.equal(r.value, 'fast')
    const shadow = await shadowOutcome
    assert.deepEqual([shadow.outcome, shadow.error_kind], ['error', 'timeout'])
    assert.equal(signal.aborted, true)
  })

  test('the draw is deterministic by unit and independent of the handle', () => {
    const a = Flags.fromObject(shadowDocument())
    const b = Flags.fromObject(shadowDocument())
    const draws = (flags) => Array.from({ length: 400 }, (_, i) => flags.variant('chat', { user_id: `u${i}` }).shadow)
    const first = draws(a)
    assert.deepEqual(first, draws(b))
    assert.deepEqual(first, draws(a), 'the same units every time')
    assert.ok(first.every((s) => s === null || s === 'candidate'))
    const share = first.filter((s) => s !== null).length / first.length
    assert.ok(share > 0.35 && share < 0.65, `about half: ${share}`)
    assert.equal(a.variant('chat', {}).shadow, null, 'no unit, no draw')
    assert.equal(a.explain('chat', shadowedUser(a)).shadow, 'candidate')
  })

  test('max_cost_per_hour stops shadows (served traffic untouched)', async () => {
    // $0.01 reserved per shadow against a $0.05 cap: five shadows, then none.
    const flags = Flags.fromObject(shadowDocument({ percent: 100, cap: 0.05 }))
    const shadows = []
    let served = 0
    for (let i = 0; i < 12; i++) {
      const r = await flags.call('chat', { user_id: `u${i}` }, async (variant, options) => {
        if (!options.shadow) return 'served'
        const done = new Output('shadow', { outputTokens: 1000 })
        shadows.push(done)
        return done
      })
      if (r.value === 'served') served++
      if (r.shadow !== null) assert.equal(r.shadow, 'candidate')
    }
    assert.equal(served, 12)
    // Shadow attempts start on a later turn of the event loop than their call's answer.
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(shadows.length, 5)
    assert.equal(flags.variant('chat', { user_id: 'u99' }).shadow, null, 'the cap is reached: no shadow drawn')
    const cap = flags.status().budgets.find((b) => b.action === 'skip_shadow')
    assert.deepEqual([cap.flag, cap.exhausted, cap.window], ['chat', true, '1h'])
    assert.equal(flags.metrics().chat.candidate.shadow_requests, 5)
  })

  test('a killed flag draws no shadow', async () => {
    const flags = Flags.fromObject(shadowDocument({ percent: 100 }))
    flags.kill('chat')
    const v = flags.variant('chat', { user_id: 'u1' })
    assert.deepEqual([v.reason, v.shadow], ['KILLED', null])
    let called = 0
    const r = await flags.call('chat', { user_id: 'u1' }, async () => {
      called++
      return 'x'
    })
    assert.deepEqual([r.variant.id, r.shadow, called], ['human', null, 0])
  })

  test('a call without a shadow passes shadow: false and no output in events', async () => {
    const flags = Flags.fromObject(shadowDocument({ percent: 0.001 }))
    const user = { user_id: 'u-not-shadowed' }
    assert.equal(flags.variant('chat', user).shadow, null)
    const outcome = nextEvent(flags, (e) => e.type === 'outcome')
    const r = await flags.call('chat', user, async (variant, options) => {
      assert.deepEqual([variant.isShadow, options.shadow], [false, false])
      return 'ok'
    })
    assert.equal(r.shadow, null)
    const event = await outcome
    assert.equal(event.shadow, false)
    assert.equal('output' in event, false)
  })
})

// ---- Cache keys ----------------------------------------------------------------------------

describe('cacheKey', () => {
  const document = {
    flags: {
      'support-bot': {
        variants: {
          stable: { model: 'claude-sonnet-4', prompt: 'support/v2.1', temperature: 0.2, max_tokens: 1500, tools: ['search'], cache_ttl_seconds: 3600 },
          'v2.2': { prompt: 'support/v2.2', model: 'claude-opus-4', temperature: 0.2, max_tokens: 1500, tools: ['search', 'rewrite'] },
        },
        default: 'stable',
        rules: [{ id: 'pick', when: { attr: 'pick', op: 'eq', value: 'v2.2' }, serve: 'v2.2' }],
      },
    },
  }

  test('matches the shared vectors; variants and payload edits give other keys', () => {
    const flags = Flags.fromObject(document)
    const stable = flags.variant('support-bot', {})
    const candidate = flags.variant('support-bot', { pick: 'v2.2' })
    // tests/vectors/v1/cache-keys.json, cases 1, 2, 3 and 6.
    assert.equal(stable.cacheKey(), 'flagrail:v1:support-bot:stable:3ef3733df0df75a2')
    assert.equal(stable.cacheKey('What is my refund status?'), 'flagrail:v1:support-bot:stable:3ef3733df0df75a2:13393e5c059f5158')
    assert.equal(candidate.cacheKey('What is my refund status?'), 'flagrail:v1:support-bot:v2.2:450b9370ae830302:13393e5c059f5158')
    assert.equal(stable.cacheKey(42, 'user-7'), 'flagrail:v1:support-bot:stable:3ef3733df0df75a2:cf0088a30029a51d')
    assert.equal(stable.cacheKey(42n, 'user-7'), stable.cacheKey('42', 'user-7'))
    assert.notEqual(stable.cacheKey('q'), candidate.cacheKey('q'))
    assert.notEqual(stable.cacheKey('ab', 'c'), stable.cacheKey('a', 'bc'))
    // The same key from a call's Variant and after a reload that keeps the payload; another
    // payload (a prompt edit) gives another key.
    const edited = structuredClone(document)
    edited.flags['support-bot'].variants.stable.prompt = 'support/v2.1.1'
    assert.equal(Flags.fromObject(document).variant('support-bot', {}).cacheKey('q'), stable.cacheKey('q'))
    assert.notEqual(Flags.fromObject(edited).variant('support-bot', {}).cacheKey('q'), stable.cacheKey('q'))
  })

  test('a call hands fn Variants with their own keys', async () => {
    const flags = Flags.fromObject({
      flags: { bot: { variants: { a: { model: 'a' }, b: { model: 'b' } }, default: 'a', fallback: ['b'] } },
    })
    const keys = []
    const r = await flags.call('bot', {}, async (variant) => {
      keys.push(variant.cacheKey('q'))
      if (variant.id === 'a') throw new Error('down')
      return 'ok'
    })
    assert.equal(r.variant.id, 'b')
    assert.equal(keys[0], flags.variant('bot', {}).cacheKey('q'))
    assert.equal(keys[1], r.variant.cacheKey('q'))
    assert.notEqual(keys[0], keys[1])
  })

  test('bad parts throw a TypeError with code INVALID_ARGUMENT; an unknown flag has no key', () => {
    const flags = Flags.fromObject(document)
    const v = flags.variant('support-bot', {})
    for (const bad of [1.5, NaN, Infinity, 2 ** 53, true, null, undefined, {}, ['a'], Symbol('s'), 2n ** 63n]) {
      assert.throws(
        () => v.cacheKey('ok', bad),
        (err) => err instanceof TypeError && err.code === 'INVALID_ARGUMENT' && /part 1/.test(err.message),
        String(typeof bad === 'symbol' ? 'symbol' : bad),
      )
    }
    assert.equal(v.cacheKey(-(2n ** 63n)), v.cacheKey('-9223372036854775808'))
    assert.equal(v.cacheKey(-0), v.cacheKey('0'))
    const missing = flags.variant('nope', {}, 'fallback')
    assert.throws(() => missing.cacheKey(), (err) => err instanceof FlagrailError && err.code === 'FLAG_NOT_FOUND')
    assert.ok(v instanceof Variant)
  })
})
