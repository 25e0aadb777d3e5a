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
  // These answers came from the one-call path (src/raw_many.rs), not the careful one.
  assert.equal(typeof flags._tables.lastPlan.run, 'function')
  flags.all(CONTEXTS[0])
  assert.equal(typeof flags._tables.allPlan.run, 'function')
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

test('a replaced document is served by the next variants call on the same plan', () => {
  // The plan's native side checks the live document by id (src/handle.rs `decide_plan`): a
  // replacement between calls must send the call back through the careful path, which
  // acknowledges the new document.
  const os = require('node:os')
  const path = require('node:path')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-variants-'))
  const file = path.join(dir, 'flags.json')
  const write = (revision, served) => {
    const doc = { revision, flags: { ...DOCUMENT.flags, static: flag({ rules: [], default: served }) } }
    fs.writeFileSync(`${file}.tmp`, JSON.stringify(doc))
    fs.renameSync(`${file}.tmp`, file)
  }
  write('f1', 'control')
  const flags = Flags.fromFile(file, { reload: false })
  try {
    const keys = ['static', 'by-user']
    for (let round = 2; round <= 4; round++) {
      const before = flags.variants({ user_id: 'u-1' }, keys)
      assert.equal(before.static.revision, `f${round - 1}`)
      write(`f${round}`, round % 2 === 0 ? 'treatment' : 'control')
      assert.equal(flags.reloadIfChanged(), true)
      const after = flags.variants({ user_id: 'u-1' }, keys)
      assert.deepEqual([after.static.revision, after.static.id], [`f${round}`, round % 2 === 0 ? 'treatment' : 'control'])
      assert.equal(after['by-user'].revision, `f${round}`)
    }
  } finally {
    flags.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
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

// --------------------------------------------------------------------------- against variant()

const fs = require('node:fs')
const path = require('node:path')
const { parseJson, stringifyJson } = require('./json.js')

const VECTORS = path.join(__dirname, '..', '..', 'tests', 'vectors')

/** Every `eval` document of the shared vectors and examples/flags.json, with their cases' contexts and instants. */
function vectorDocuments() {
  const index = parseJson(fs.readFileSync(path.join(VECTORS, 'index.json'), 'utf8'))
  const found = []
  for (const entry of index.files) {
    if (entry.kind !== 'eval') continue
    const data = parseJson(fs.readFileSync(path.join(VECTORS, entry.path), 'utf8'))
    found.push({ name: entry.path, text: stringifyJson(data.document), cases: data.cases.map((c) => [c.context, c.at ?? undefined]) })
  }
  const example = fs.readFileSync(path.join(__dirname, '..', '..', 'examples', 'flags.json'), 'utf8')
  found.push({ name: 'examples/flags.json', text: example, cases: [] })
  return found
}

// Contexts no case uses: odd types, lone surrogates, getters that throw, a prototype chain.
const ODD_CONTEXTS = [
  null,
  undefined,
  {},
  'a string',
  { user_id: null, plan: 3, org_id: true, segment: ['a', 'b'], country: 2.5 },
  { user_id: 'u-\ud800', plan: 'pro\udfff', conversation_id: 'c-1' },
  { user_id: 2n ** 70n, plan: { nested: 1 }, email: () => 1, version: Symbol('v') },
  { user_id: 'ü-ñ-😀', plan: '', segment: ['t', 1], version: '1.2.3' },
  Object.create({ user_id: 'inherited', plan: 'pro' }),
  Object.defineProperty({ plan: 'pro' }, 'user_id', {
    get() {
      throw new Error('boom')
    },
    enumerable: true,
  }),
  new Proxy({}, {
    get() {
      throw new Error('proxy')
    },
  }),
]

function contexts(cases) {
  const generated = Array.from({ length: 60 }, (_, i) => [{ user_id: `u-${i}`, plan: ['pro', 'free', 'team'][i % 3], org_id: i % 5 }, undefined])
  return [...cases, ...generated, ...ODD_CONTEXTS.map((c) => [c, undefined])]
}

const options = (at) => (at === undefined ? undefined : { at })

function assertAgree(many, single, context, at, keys) {
  const distinctKeys = [...new Set(keys)]
  const results = many.variants(context, keys, options(at))
  assert.deepEqual(Object.keys(results), distinctKeys.filter((k) => k !== '__proto__' || Object.hasOwn(results, k)))
  for (const key of distinctKeys) {
    const want = single.variant(key, context, null, options(at))
    const got = results[key]
    assert.ok(got instanceof want.constructor)
    assert.deepEqual(got.toJSON(), want.toJSON(), `${key} ${String(at)}`)
    assert.equal(got.isShadow, want.isShadow)
  }
}

for (const { name, text, cases } of vectorDocuments()) {
  test(`variants and all equal per-key variant: ${name}`, () => {
    // Two handles on the same document, called in the same order: in-memory pins (sticky
    // flags) evolve the same way in both, so every result must be equal field by field.
    const many = Flags.fromJson(text)
    const single = Flags.fromJson(text)
    const keys = Object.keys(parseJson(text).flags)
    const asked = [keys.at(-1), 'no-such-flag', ...keys, keys[0], 'no-such-flag']
    for (const [context, at] of contexts(cases)) {
      assertAgree(many, single, context, at, asked)
      // A new array with the same keys each time (as a literal in a handler would be).
      assertAgree(many, single, context, at, keys.slice(0, 3))
      const everything = many.all(context, options(at))
      assert.deepEqual(Object.keys(everything), keys)
      for (const key of keys) assert.deepEqual(everything[key].toJSON(), single.variant(key, context, null, options(at)).toJSON())
    }
  })
}

test('variants equal variant under kills and overrides, and after a key list changes in place', () => {
  const { text, cases } = vectorDocuments().find((d) => d.name === 'examples/flags.json')
  const many = Flags.fromJson(text)
  const single = Flags.fromJson(text)
  const document = parseJson(text)
  const keys = Object.keys(document.flags)
  const list = [...keys]
  const sample = contexts(cases).slice(0, 30)
  for (const [context, at] of sample) assertAgree(many, single, context, at, list)
  // The same array, changed: the cached plan must not answer for the old keys.
  list.reverse()
  for (const [context, at] of sample) assertAgree(many, single, context, at, list)
  for (const handle of [many, single]) handle.kill(keys[0], { reason: 'drill' })
  for (const [context, at] of sample) assertAgree(many, single, context, at, keys)
  assert.equal(many.variants({}, keys)[keys[0]].reason, 'KILLED')
  const forced = Object.keys(document.flags[keys[1]].variants)[0]
  many.override(keys[1], forced, () =>
    single.override(keys[1], forced, () => {
      for (const [context, at] of sample) assertAgree(many, single, context, at, keys)
      assert.equal(many.variants({}, [keys[1]])[keys[1]].id, forced)
    }),
  )
  for (const handle of [many, single]) handle.kill({ reason: 'everything' })
  for (const [context, at] of sample) assertAgree(many, single, context, at, keys)
  assert.deepEqual(new Set(Object.values(many.all({})).map((v) => v.reason)), new Set(['KILLED']))
})

test('many keys and attributes answer as variant on every call', () => {
  // 20 flags reading 17 attributes: past the plan's value limit. Mirrors
  // tests/python/test_variants.py (test_many_keys_and_attributes_answer_as_variant_on_every_call).
  const flags = {}
  for (let i = 0; i < 20; i++) {
    flags[`f${i}`] = {
      bucket_by: `a${i % 12}`,
      variants: { x: {}, y: {} },
      default: 'x',
      rules: [
        { id: 't', when: { attr: `b${i % 5}`, op: 'eq', value: 'on' }, serve: 'y' },
        { id: 's', split: [{ variant: 'x', percent: 50 }, { variant: 'y', percent: 50 }] },
      ],
    }
  }
  const handle = Flags.fromObject({ revision: 'wide', flags })
  const keys = Object.keys(flags)
  for (let u = 0; u < 120; u++) {
    const context = {}
    for (let j = 0; j < 12; j++) context[`a${j}`] = `u${u}-${j}`
    for (let j = 0; j < 5; j++) context[`b${j}`] = (u + j) % 3 === 0 ? 'on' : 'off'
    for (let round = 0; round < 2; round++) {
      for (const results of [handle.variants(context, keys), handle.all(context)]) {
        assert.deepEqual(Object.keys(results), keys)
        for (const key of keys) assert.deepEqual(fields(results[key]), fields(handle.variant(key, context)), key)
      }
    }
  }
})

test('a custom pin store and more key lists than plans keep the same answers', () => {
  const { text } = vectorDocuments().find((d) => d.name === 'v1/eval-ramp.json')
  const many = Flags.fromJson(text)
  const single = Flags.fromJson(text)
  const keys = Object.keys(parseJson(text).flags)
  // 100 different key lists (past the plans kept per document).
  for (let i = 0; i < 100; i++) {
    const list = [keys[i % keys.length], `missing-${i}`]
    assertAgree(many, single, { user_id: `u-${i}`, conversation_id: `c-${i}` }, undefined, list)
  }
  const stores = [new Map(), new Map()]
  const store = (map) => ({ get: (k) => map.get(k) ?? null, set: (k, v) => void map.set(k, v), delete: (k) => void map.delete(k) })
  many.usePinStore(store(stores[0]))
  single.usePinStore(store(stores[1]))
  for (let i = 0; i < 40; i++) assertAgree(many, single, { user_id: `u-${i}`, conversation_id: `c-${i % 7}` }, undefined, keys)
  assert.deepEqual([...stores[0]], [...stores[1]])
})

test('results too wide for one number (400 variants) come back whole', () => {
  const many = {}
  for (let i = 0; i < 400; i++) many[`v${i}`] = { i }
  const wide = {
    bucket_by: 'user_id',
    variants: many,
    default: 'v0',
    rules: [{ id: 'spread', split: Object.keys(many).map((variant) => ({ variant, percent: 0.25 })) }],
  }
  const text = JSON.stringify({ revision: 'wide', flags: { wide, narrow: flag(), wide2: wide } })
  const a = Flags.fromJson(text)
  const b = Flags.fromJson(text)
  const keys = ['wide', 'narrow', 'missing', 'wide2']
  let high = 0
  for (let i = 0; i < 200; i++) {
    const context = { user_id: `u-${i}` }
    assertAgree(a, b, context, undefined, keys)
    if (Number(a.variants(context, keys).wide.id.slice(1)) > 255) high++
  }
  // Variants past index 255 were served: their results did not fit the packed number.
  assert.ok(high > 40, `${high}`)
  assert.equal(typeof a._tables.lastPlan.run, 'function')
})
