'use strict'
// Test helpers for users' own tests: Flags.forTests and flags.override (an AsyncLocalStorage
// scope: concurrent async work never sees another scope's overrides, and a throw ends it).

const assert = require('node:assert/strict')
const path = require('node:path')
const { setTimeout: sleep } = require('node:timers/promises')
const { test } = require('node:test')

const { Flags, FlagrailError } = require('..')

const EXAMPLE = path.join(__dirname, '..', '..', 'examples', 'flags.json')
const USER = { user_id: 'user-14', plan: 'pro', email: 'ada@example.com' }
const ENTERPRISE = { user_id: 'u-2', plan: 'enterprise' }

const example = () => Flags.fromFile(EXAMPLE, { reload: false })

test('forTests builds a document from a short mapping', () => {
  const flags = Flags.forTests({
    'support-bot': { stable: { model: 'm-1' }, 'v2.2': { model: 'm-2' }, default: 'v2.2' },
    tone: 'friendly',
  })
  const v = flags.variant('support-bot', USER)
  assert.deepEqual([v.id, v.get('model'), v.reason, v.revision], ['v2.2', 'm-2', 'DEFAULT', 'for-tests'])
  assert.equal(flags.variant('tone', USER).id, 'friendly')
  const full = Flags.forTests({
    bot: { variants: { a: {}, b: {} }, rules: [{ id: 'pro', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'b' }] },
  })
  assert.equal(full.variant('bot', USER).id, 'b')
  assert.equal(full.variant('bot', ENTERPRISE).id, 'a')
})

test('forTests errors name the problem', () => {
  assert.throws(() => Flags.forTests({ bot: 3 }), (e) => e instanceof FlagrailError && e.code === 'INVALID_ARGUMENT' && /"bot"/.test(e.message))
  assert.throws(
    () => Flags.forTests({ bot: { x: {}, default: 'nope' } }),
    (e) => e.code === 'INVALID_DOCUMENT' && e.problems.some((p) => p.path === 'flags.bot.default'),
  )
})

test('override serves the variant inside fn and returns its result', () => {
  const flags = example()
  assert.equal(flags.variant('support-bot', ENTERPRISE).id, 'stable')
  const seen = flags.override('support-bot', 'v2.2', () => {
    const v = flags.variant('support-bot', ENTERPRISE)
    return [v.id, v.reason, v.ruleId, flags.flag('support-bot').variant(USER).id]
  })
  assert.deepEqual(seen, ['v2.2', 'DEFAULT', null, 'v2.2'])
  assert.equal(flags.variant('support-bot', ENTERPRISE).id, 'stable')
})

test('override beats a kill; nested scopes restore, also on a throw', () => {
  const flags = example()
  flags.kill('support-bot')
  assert.equal(flags.override('support-bot', 'v2.2', () => flags.variant('support-bot', USER).id), 'v2.2')
  assert.equal(flags.variant('support-bot', USER).reason, 'KILLED')
  flags.unkill('support-bot')
  flags.override('support-bot', 'v2.2', () => {
    assert.throws(
      () =>
        flags.override('support-bot', 'human', () => {
          assert.equal(flags.variant('support-bot', USER).id, 'human')
          throw new Error('boom')
        }),
      /boom/,
    )
    assert.equal(flags.variant('support-bot', USER).id, 'v2.2')
  })
  assert.equal(flags.variant('support-bot', ENTERPRISE).id, 'stable')
})

test('override typos throw before fn runs', () => {
  const flags = example()
  let ran = false
  assert.throws(
    () => flags.override('support-bot', 'v9', () => (ran = true)),
    (e) => e.code === 'INVALID_ARGUMENT' && /no variant "v9"/.test(e.message),
  )
  assert.throws(() => flags.override('suport-bot', 'v2.2', () => (ran = true)), /no such flag/)
  assert.throws(() => flags.override('support-bot', 'v2.2'), (e) => e.code === 'INVALID_ARGUMENT')
  assert.equal(ran, false)
})

test('overrides do not leak between concurrent async tasks', async () => {
  const flags = example()
  let release
  const gate = new Promise((resolve) => (release = resolve))
  const overriding = flags.override('support-bot', 'v2.2', async () => {
    await gate
    const v = flags.variant('support-bot', ENTERPRISE).id
    const r = await flags.call('support-bot', ENTERPRISE, async (variant) => variant.id)
    return [v, r.variant.id, r.value]
  })
  // The scope above is open (waiting on the gate); this task does not see it.
  const plain = (async () => {
    await sleep(1)
    const v = flags.variant('support-bot', ENTERPRISE).id
    const r = await flags.call('support-bot', ENTERPRISE, async (variant) => variant.id)
    release()
    return [v, r.variant.id]
  })()
  assert.deepEqual(await plain, ['stable', 'stable'])
  assert.deepEqual(await overriding, ['v2.2', 'v2.2', 'v2.2'])
  // After the async scope settled, the caller's context never had it.
  assert.equal(flags.variant('support-bot', ENTERPRISE).id, 'stable')
})

test('an async scope that rejects ends too', async () => {
  const flags = example()
  await assert.rejects(
    flags.override('support-bot', 'human', async () => {
      await sleep(1)
      assert.equal(flags.variant('support-bot', USER).id, 'human')
      throw new Error('async boom')
    }),
    /async boom/,
  )
  assert.equal(flags.variant('support-bot', ENTERPRISE).id, 'stable')
})

test('overrides belong to one Flags', () => {
  const flags = example()
  const other = example()
  flags.override('support-bot', 'v2.2', () => {
    assert.equal(other.variant('support-bot', ENTERPRISE).id, 'stable')
  })
})
