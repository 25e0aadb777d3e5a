'use strict'
// `flags.variants(context, keys)` and `flags.all(context)`: several flags for one context.

const assert = require('node:assert/strict')
const { test } = require('node:test')

const { Flags, FlagrailError } = require('..')

const SPLIT = [
  { variant: 'control', percent: 50 },
  { variant: 'treatment', percent: 50 },
]

function flag(extra = {}) {
  return {
    bucket_by: 'user_id',
    variants: { control: { n: 1 }, treatment: { n: 2 } },
    default: 'control',
    rules: [{ id: 'split', split: SPLIT }],
    ...extra,
  }
}

const DOCUMENT = {
  revision: 'r1',
  flags: {
    'by-user': flag(),
    'by-plan': flag({ rules: [{ id: 'pro', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'treatment' }] }),
    'by-org': flag({ bucket_by: 'org_id' }),
    static: flag({ rules: [] }),
  },
}

const CONTEXTS = Array.from({ length: 300 }, (_, i) => ({
  user_id: `u-${i}`,
  plan: i % 3 === 0 ? 'pro' : 'free',
  org_id: i % 7,
}))

const fields = (v) => [v.flag, v.id, v.reason, v.ruleId, v.bucket, v.revision]

test('variants agree with variant for every context', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const keys = ['by-user', 'by-plan', 'by-org', 'static']
  for (const context of CONTEXTS) {
    const results = flags.variants(context, keys)
    assert.deepEqual(Object.keys(results), keys)
    for (const key of keys) assert.deepEqual(fields(results[key]), fields(flags.variant(key, context)), key)
  }
})

test('all is every flag in document order', () => {
  const flags = Flags.fromObject(DOCUMENT)
  for (const context of CONTEXTS.slice(0, 50)) {
    const results = flags.all(context)
    assert.deepEqual(Object.keys(results), ['by-user', 'by-plan', 'by-org', 'static'])
    for (const [key, result] of Object.entries(results)) assert.deepEqual(fields(result), fields(flags.variant(key, context)))
  }
})

test('unknown keys are not found and repeats appear once', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const results = flags.variants({ user_id: 'u-1' }, new Set(['nope', 'by-user']).add('nope'))
  assert.deepEqual(Object.keys(results), ['nope', 'by-user'])
  assert.equal(results.nope.id, null)
  assert.equal(results.nope.reason, 'FLAG_NOT_FOUND')
  assert.equal(results['by-user'].reason, 'SPLIT')
  assert.deepEqual(Object.keys(flags.variants({ user_id: 'u-1' }, ['static', 'static'])), ['static'])
})

test('only the requested flags attributes are read', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const reads = []
  const spy = new Proxy({ user_id: 'u-1', plan: 'pro', org_id: 3 }, {
    get(target, key) {
      reads.push(key)
      return target[key]
    },
  })
  flags.variants(spy, ['by-plan'])
  assert.deepEqual(reads, ['plan'])
  reads.length = 0
  flags.variants(spy, ['by-plan', 'by-user', 'by-user'])
  assert.deepEqual([...reads].sort(), ['plan', 'user_id'])
  reads.length = 0
  flags.all(spy)
  assert.deepEqual([...reads].sort(), ['org_id', 'plan', 'user_id'])
})

test('a missing context, no keys, and a flag named __proto__', () => {
  const flags = Flags.fromObject({ revision: 'p', flags: { ...DOCUMENT.flags, ['__proto__']: flag({ rules: [] }) } })
  assert.equal(flags.all(null).static.reason, 'DEFAULT')
  assert.equal(flags.all().static.id, 'control')
  assert.deepEqual(flags.variants({}, []), {})
  const results = flags.variants({}, ['__proto__'])
  assert.equal(Object.getPrototypeOf(results), Object.prototype)
  assert.equal(Object.getOwnPropertyDescriptor(results, '__proto__').value.id, 'control')
})

test('keys must be an iterable of strings', () => {
  const flags = Flags.fromObject(DOCUMENT)
  for (const keys of ['by-user', null, undefined, 3]) {
    assert.throws(() => flags.variants({}, keys), (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT')
  }
  assert.throws(() => flags.variants({}, ['by-user', 3]), /keys\[1\] must be a string/)
})

test('at is passed to every flag', () => {
  const flags = Flags.fromObject({
    revision: 'ramps',
    flags: {
      ramped: {
        bucket_by: 'user_id',
        variants: { old: {}, new: {} },
        default: 'old',
        rules: [{ id: 'ramp', ramp: { variant: 'new', baseline: 'old', start: '2026-11-21T09:00:00Z', steps: [{ percent: 100 }] } }],
      },
    },
  })
  const ctx = { user_id: 'u-1' }
  assert.equal(flags.variants(ctx, ['ramped'], { at: '2026-11-20T00:00:00Z' }).ramped.id, 'old')
  assert.equal(flags.variants(ctx, ['ramped'], { at: new Date('2026-11-22T00:00:00Z') }).ramped.id, 'new')
  assert.equal(flags.all(ctx, { at: '2026-11-22T00:00:00Z' }).ramped.id, 'new')
})

test('a reload between calls is seen by the next call', () => {
  const flags = Flags.fromObject(DOCUMENT)
  assert.equal(flags.variants({}, ['static']).static.revision, 'r1')
  flags.kill('static')
  assert.equal(flags.variants({}, ['static']).static.reason, 'KILLED')
})

test('a test override applies to variants and all', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const ctx = { user_id: 'u-1', plan: 'free' }
  flags.override('by-plan', 'treatment', () => {
    assert.equal(flags.variants(ctx, ['by-plan', 'static'])['by-plan'].id, 'treatment')
    assert.equal(flags.all(ctx)['by-plan'].id, 'treatment')
    assert.equal(flags.all(ctx).static.id, 'control')
  })
  assert.equal(flags.variants(ctx, ['by-plan'])['by-plan'].id, 'control')
})
