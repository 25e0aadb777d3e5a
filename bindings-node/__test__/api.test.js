'use strict'
// The public API of the Node package: loading, results, errors, explain, status, kills, the
// value mapping of contexts, and the promise that reading a flag never throws.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')

const { Flags, Flag, Variant, FlagrailError, bucket, HASH_VERSION } = require('..')

const EXAMPLE = path.join(__dirname, '..', '..', 'examples', 'flags.json')
const RAMP_START = Date.parse('2026-11-21T09:00:00Z')
const DAY = 24 * 3600 * 1000

/** The scenario of docs/benchmarks.md plus flags that exercise the less common paths. */
const DOCUMENT = {
  revision: 'test-1',
  segments: { staff: { attr: 'email', op: 'ends_with', value: '@acme.com' } },
  flags: {
    'chat-model': {
      bucket_by: 'user_id',
      variants: { control: { model: 'a', nested: { tools: ['x'] } }, v2: { model: 'b' }, v3: { model: 'c' } },
      default: 'control',
      kill: { active: false, serve: 'v2' },
      rules: [
        { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: 'v3' },
        {
          id: 'split',
          split: [
            { variant: 'control', percent: 90 },
            { variant: 'v2', percent: 5 },
            { variant: 'v3', percent: 5 },
          ],
        },
      ],
    },
    // Six attributes: more than the fixed-arity fast path takes.
    wide: {
      variants: { a: {}, b: {} },
      default: 'a',
      rules: [
        {
          id: 'all-six',
          when: {
            all: [
              { attr: 'p1', op: 'eq', value: 'x' },
              { attr: 'p2', op: 'eq', value: 2 },
              { attr: 'p3', op: 'eq', value: true },
              { attr: 'p4', op: 'contains', value: 'g' },
              { attr: 'p5', op: 'gt', value: 1.5 },
              { segment: 'staff' },
            ],
          },
          serve: 'b',
        },
      ],
    },
    constant: { variants: { only: 'just a string' }, default: 'only' },
  },
}

/** A flag with 300 variants: results beyond the packed number take the unpacked path. */
function manyVariants() {
  const variants = {}
  for (let i = 0; i < 300; i++) variants[`v${i}`] = { i }
  return {
    flags: {
      many: {
        variants,
        default: 'v0',
        rules: [{ id: 'pick', when: { attr: 'n', op: 'eq', value: 299 }, serve: 'v299' }],
      },
    },
  }
}

test('fromObject, fromJson and fromFile load the same document', () => {
  const text = fs.readFileSync(EXAMPLE, 'utf8')
  const fromFile = Flags.fromFile(EXAMPLE, { reload: false })
  for (const flags of [fromFile, Flags.fromJson(text), Flags.fromJson(Buffer.from(text)), Flags.fromObject(JSON.parse(text))]) {
    assert.ok(flags instanceof Flags)
    assert.equal(flags.revision, '2026-11-21.1')
    const v = flags.variant('support-bot', { user_id: 'u-1', email: 'a@acme.com' })
    assert.equal(v.id, 'v2.2')
    assert.equal(v.reason, 'TARGETING_MATCH')
    assert.equal(v.ruleId, 'dogfood')
  }
  assert.equal(fromFile.status().source, `file:${EXAMPLE}`)
  assert.equal(fromFile.status().watching, false)
})

test('a Variant carries id, flag, frozen payload, reason, ruleId, bucket, revision, shadow, budget', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const v = flags.variant('chat-model', { user_id: 'user-1', segment: 'external' })
  assert.ok(v instanceof Variant)
  assert.equal(v.flag, 'chat-model')
  assert.equal(v.reason, 'SPLIT')
  assert.equal(v.ruleId, 'split')
  assert.equal(v.bucket, bucket('chat-model', 'user-1'))
  assert.equal(v.revision, 'test-1')
  assert.equal(v.killSource, null)
  assert.equal(v.shadow, null)
  assert.equal(v.budget, null)
  assert.equal(v.isShadow, false)
  assert.equal(v.id, v.bucket < 90000 ? 'control' : v.bucket < 95000 ? 'v2' : 'v3')
  assert.equal(v.get('model'), { control: 'a', v2: 'b', v3: 'c' }[v.id])
  assert.equal(v.get('absent'), undefined)
  assert.equal(v.get('absent', 7), 7)
  assert.ok(Object.isFrozen(v.payload))
  assert.throws(() => {
    'use strict'
    v.payload.model = 'changed'
  }, TypeError)
  assert.deepEqual(JSON.parse(JSON.stringify(v)), {
    flag: 'chat-model',
    variant: v.id,
    payload: JSON.parse(JSON.stringify(v.payload)),
    reason: 'SPLIT',
    rule_id: 'split',
    bucket: v.bucket,
    revision: 'test-1',
    kill_source: null,
    shadow: null,
    budget: null,
  })
})

test('payloads are deeply frozen and shared between results of one document', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const a = flags.variant('chat-model', { segment: 'external' })
  const b = flags.variant('chat-model', {})
  assert.equal(a.id, 'control')
  assert.equal(a.reason, 'DEFAULT')
  assert.equal(a.payload, b.payload)
  assert.ok(Object.isFrozen(a.payload.nested))
  assert.ok(Object.isFrozen(a.payload.nested.tools))
  assert.equal(flags.variant('constant', {}).payload, 'just a string')
  assert.equal(flags.variant('constant', {}).get('length'), undefined)
})

test('targeting, the default, and the split agree with bucket()', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const internal = flags.variant('chat-model', { user_id: 'user-0', segment: 'internal' })
  assert.deepEqual([internal.id, internal.reason, internal.ruleId, internal.bucket], ['v3', 'TARGETING_MATCH', 'internal', null])
  const counts = { control: 0, v2: 0, v3: 0 }
  for (let i = 0; i < 20000; i++) {
    const v = flags.variant('chat-model', { user_id: `user-${i}`, segment: 'external' })
    assert.equal(v.bucket, bucket('chat-model', `user-${i}`))
    counts[v.id]++
  }
  assert.ok(Math.abs(counts.control / 200 - 90) < 1.5, JSON.stringify(counts))
  assert.ok(Math.abs(counts.v2 / 200 - 5) < 1, JSON.stringify(counts))
})

test('an unknown flag gives the caller default with FLAG_NOT_FOUND, never an error', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const v = flags.variant('no-such-flag', { user_id: 'u' }, 'fallback')
  assert.deepEqual([v.flag, v.id, v.reason, v.ruleId, v.bucket, v.revision], ['no-such-flag', 'fallback', 'FLAG_NOT_FOUND', null, null, 'test-1'])
  assert.equal(v.payload, null)
  assert.equal(flags.variant('no-such-flag', {}).id, null)
  assert.equal(flags.variant(undefined, undefined).reason, 'FLAG_NOT_FOUND')
  assert.equal(flags.variant(42, null).flag, '42')
})

test('flags.flag() binds a key', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const chat = flags.flag('chat-model')
  assert.ok(chat instanceof Flag)
  assert.equal(chat.key, 'chat-model')
  assert.deepEqual(chat.variant({ user_id: 'user-7', segment: 'external' }), flags.variant('chat-model', { user_id: 'user-7', segment: 'external' }))
  assert.equal(chat.explain({ segment: 'internal' }).rule_id, 'internal')
  assert.equal(flags.flag('missing').variant({}, 'dflt').id, 'dflt')
})

test('context values map to the core types the same way everywhere', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const matching = { p1: 'x', p2: 2, p3: true, p4: ['f', 'g'], p5: 1.75, email: 'me@acme.com' }
  assert.equal(flags.variant('wide', matching).id, 'b')
  assert.equal(flags.variant('wide', { ...matching, p2: 2n }).id, 'b', 'a bigint is an integer')
  assert.equal(flags.variant('wide', { ...matching, p2: 2.5 }).id, 'a')
  assert.equal(flags.variant('wide', { ...matching, p3: 'true' }).id, 'a', 'no coercion of strings to booleans')
  assert.equal(flags.variant('wide', { ...matching, p4: ['f', 1] }).id, 'a', 'a list with a non-string is unsupported')
  assert.equal(flags.variant('wide', { ...matching, email: undefined }).id, 'a')
  // Integer units hash as decimal text; a bigint beyond 2^53 stays exact.
  for (const [unit, text] of [[42, '42'], [42n, '42'], [-7, '-7'], [9007199254740993n, '9007199254740993'], [-(2n ** 63n), '-9223372036854775808']]) {
    assert.equal(flags.variant('chat-model', { user_id: unit }).bucket, bucket('chat-model', text), String(unit))
  }
  // Units that cannot be bucketed skip the split (the default serves), they do not throw.
  for (const unit of [1.5, NaN, Infinity, 2 ** 60, 2n ** 64n, true, '', null, undefined, {}, [], ['a'], () => 1, Symbol('s')]) {
    const v = flags.variant('chat-model', { user_id: unit })
    assert.deepEqual([v.id, v.reason, v.bucket], ['control', 'DEFAULT', null], String(typeof unit))
  }
})

test('non-ASCII, emoji and long strings read exactly', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const units = ['ünïcødé', '用户-42', '👩‍💻 dev', 'x'.repeat(123), 'y'.repeat(124), 'é'.repeat(70), '🙂'.repeat(40), 'z'.repeat(5000), 'a\u0000b']
  for (const unit of units) {
    assert.equal(flags.variant('chat-model', { user_id: unit }).bucket, bucket('chat-model', unit), unit.slice(0, 20))
  }
  const staff = { p1: 'x', p2: 2, p3: true, p4: ['g'], p5: 2 }
  assert.equal(flags.variant('wide', { ...staff, email: `${'é'.repeat(200)}@acme.com` }).id, 'b')
  assert.equal(flags.variant('wide', { ...staff, email: 'a@acme.com', p4: ['🙂'.repeat(100), 'g'] }).id, 'b')
})

test('reading a flag never throws, whatever the context', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const throwing = {
    get user_id() {
      throw new Error('getter')
    },
    segment: 'internal',
  }
  const proxy = new Proxy({}, {
    get() {
      throw new Error('proxy')
    },
  })
  const hostileList = new Proxy(['g'], {
    get(target, key) {
      if (key === '0') throw new Error('element')
      return Reflect.get(target, key)
    },
  })
  for (const context of [throwing, proxy, null, undefined, 'a string', 42, [], new Map([['user_id', 'u']])]) {
    const v = flags.variant('chat-model', context)
    assert.ok(v instanceof Variant)
  }
  assert.equal(flags.variant('chat-model', throwing).id, 'v3', 'the readable attribute still counts')
  const v = flags.variant('wide', { p1: 'x', p2: 2, p3: true, p4: hostileList, p5: 2, email: 'a@acme.com' })
  assert.equal(v.id, 'a')
  const explained = flags.explain('chat-model', proxy)
  assert.equal(explained.reason, 'DEFAULT')
})

test('flags with more than 4 attributes and with more than 255 variants', () => {
  const flags = Flags.fromObject(DOCUMENT)
  assert.equal(flags.variant('wide', { p1: 'x', p2: 2, p3: true, p4: ['g'], p5: 3, email: 'b@acme.com' }).ruleId, 'all-six')
  const many = Flags.fromObject(manyVariants())
  const v = many.variant('many', { n: 299 })
  assert.deepEqual([v.id, v.reason, v.ruleId, v.payload.i], ['v299', 'TARGETING_MATCH', 'pick', 299])
  assert.equal(many.variant('many', { n: 1 }, null, { at: '2026-01-01T00:00:00Z' }).id, 'v0')
  many.kill('many')
  const killed = many.variant('many', { n: 299 })
  assert.deepEqual([killed.id, killed.reason, killed.killSource], ['v0', 'KILLED', 'local-flag'])
})

test('at: evaluates a ramp as of an instant (Date or RFC 3339)', () => {
  const flags = Flags.fromFile(EXAMPLE, { reload: false })
  const steps = [
    [RAMP_START - 1, 0],
    [RAMP_START, 1000],
    [RAMP_START + DAY, 5000],
    [RAMP_START + 3 * DAY, 25000],
    [RAMP_START + 6 * DAY, 50000],
    [RAMP_START + 8 * DAY, 100000],
  ]
  const seen = new Set()
  for (let i = 0; i < 300; i++) {
    const user = { user_id: `user-${i}` }
    const b = bucket('support-bot', user.user_id)
    for (const [ms, threshold] of steps) {
      for (const at of [new Date(ms), new Date(ms).toISOString()]) {
        const v = flags.variant('support-bot', user, null, { at })
        // The ramp has no baseline: units outside it fall through to the default.
        assert.equal(v.id, b < threshold ? 'v2.2' : 'stable', `${user.user_id} at ${new Date(ms).toISOString()}`)
        assert.equal(v.reason, b < threshold ? 'SPLIT' : 'DEFAULT')
        assert.equal(v.bucket, b < threshold ? b : null)
        seen.add(`${threshold}:${v.id}`)
      }
    }
  }
  // The 300 users cover both sides of every step but the first (1 % of 300 is 3 users).
  assert.ok(seen.size >= 10, [...seen].join(' '))
  const user = { user_id: 'user-123' }
  assert.equal(flags.explain('support-bot', user, { at: '2026-12-01T00:00:00Z' }).variant, 'v2.2')
  for (const at of ['yesterday', new Date(NaN), 17, {}]) {
    assert.throws(() => flags.variant('support-bot', user, null, { at }), (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT')
  }
})

test('explain returns the decision and its steps with cross-language field names', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const e = flags.explain('chat-model', { user_id: 'user-3', segment: { nested: true } })
  const v = flags.variant('chat-model', { user_id: 'user-3', segment: { nested: true } })
  assert.equal(e.variant, v.id)
  assert.equal(e.rule_id, 'split')
  assert.equal(e.bucket, v.bucket)
  assert.ok(Array.isArray(e.steps) && e.steps.length > 0)
  assert.match(JSON.stringify(e.steps), /object/, 'an unsupported value is named in the steps')
  assert.equal(flags.explain('nope', {}).reason, 'FLAG_NOT_FOUND')
})

test('kill and unkill act locally, immediately, and show in status', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const user = { user_id: 'user-1', segment: 'internal' }
  flags.kill('chat-model', { reason: 'fire drill' })
  let v = flags.variant('chat-model', user)
  assert.deepEqual([v.id, v.reason, v.ruleId, v.bucket, v.killSource], ['v2', 'KILLED', null, null, 'local-flag'])
  assert.equal(flags.status().local_kills.flags['chat-model'].reason, 'fire drill')
  flags.unkill('chat-model')
  assert.equal(flags.variant('chat-model', user).reason, 'TARGETING_MATCH')
  flags.kill({ reason: 'everything' })
  v = flags.variant('chat-model', user)
  assert.deepEqual([v.reason, v.killSource], ['KILLED', 'local-all'])
  assert.equal(flags.variant('constant', {}).killSource, 'local-all')
  assert.equal(flags.status().local_kills.all.reason, 'everything')
  flags.unkill()
  assert.equal(flags.variant('chat-model', user).reason, 'TARGETING_MATCH')
  assert.equal(flags.status().local_kills.all, null)
})

test('a kill written in the document reads KILLED with source flag or document', () => {
  const doc = structuredClone(DOCUMENT)
  doc.flags['chat-model'].kill.active = true
  const v = Flags.fromObject(doc).variant('chat-model', { user_id: 'u' })
  assert.deepEqual([v.id, v.reason, v.killSource], ['v2', 'KILLED', 'flag'])
  doc.flags['chat-model'].kill.active = false
  doc.kill = { active: true, reason: 'all off' }
  const w = Flags.fromObject(doc).variant('chat-model', { user_id: 'u' })
  assert.deepEqual([w.reason, w.killSource], ['KILLED', 'document'])
})

test('status describes a static source', () => {
  const status = Flags.fromObject(DOCUMENT).status()
  assert.equal(status.source, 'static')
  assert.equal(status.revision, 'test-1')
  assert.equal(status.last_error, null)
  assert.equal(typeof status.age_seconds, 'number')
})

test('document errors carry INVALID_DOCUMENT and every problem with its path', () => {
  const bad = {
    flags: {
      'support-bot': {
        variants: { a: {} },
        default: 'b',
        rules: [{ id: 'r', when: { attr: 'plan', op: 'equalz', value: 'x' }, serve: 'a' }],
      },
    },
  }
  for (const load of [() => Flags.fromObject(bad), () => Flags.fromJson(JSON.stringify(bad))]) {
    let thrown
    try {
      load()
    } catch (err) {
      thrown = err
    }
    assert.ok(thrown instanceof FlagrailError)
    assert.ok(thrown instanceof Error)
    assert.equal(thrown.name, 'FlagrailError')
    assert.equal(thrown.code, 'INVALID_DOCUMENT')
    const paths = thrown.problems.map((p) => p.path).sort()
    assert.deepEqual(paths, ['flags.support-bot.default', 'flags.support-bot.rules[0].when.op'])
    const op = thrown.problems.find((p) => p.path.endsWith('.op'))
    assert.equal(op.code, 'UNKNOWN_OPERATOR')
    assert.match(op.message, /equalz/)
    assert.match(thrown.message, /flags\.support-bot\.rules\[0\]\.when\.op/)
    assert.ok(thrown.stack.includes('api.test.js'), 'the stack starts in the caller')
  }
  assert.throws(() => Flags.fromJson('{"flags": '), (err) => err.code === 'INVALID_DOCUMENT' && err.problems[0].code === 'INVALID_JSON')
})

test('source and argument errors carry their codes', () => {
  assert.throws(() => Flags.fromFile(path.join(os.tmpdir(), 'flagrail-no-such-file.json')), (err) => err instanceof FlagrailError && err.code === 'SOURCE_UNREACHABLE' && err.problems.length === 0)
  assert.throws(() => Flags.fromObject({ big: 1n }), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromJson(42), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromFile(EXAMPLE, { pollInterval: 0 }), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => new Flags(0), TypeError)
})

test('bucket() is bucketing v1 and validates its arguments', () => {
  assert.equal(HASH_VERSION, 1)
  assert.equal(bucket('support-bot', 'user-123'), 86763)
  assert.equal(bucket('support-bot', 'user-123', 100000), 86763)
  assert.equal(bucket('support-bot', 'user-123', 1), 0)
  assert.equal(bucket('s', 42), bucket('s', '42'))
  assert.equal(bucket('s', 42n), bucket('s', '42'))
  assert.equal(bucket('s', -(2n ** 63n)), bucket('s', '-9223372036854775808'))
  assert.equal(bucket('s', 2n ** 63n - 1n, 4294967295), bucket('s', '9223372036854775807', 4294967295))
  const invalid = (fn) => assert.throws(fn, (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT')
  invalid(() => bucket('s', 'u', 0))
  invalid(() => bucket('s', 'u', 2 ** 32))
  invalid(() => bucket('s', 'u', 1.5))
  invalid(() => bucket('s', 1.5))
  invalid(() => bucket('s', 2 ** 53))
  invalid(() => bucket('s', 2n ** 63n))
  invalid(() => bucket('s', null))
  invalid(() => bucket(1, 'u'))
  invalid(() => bucket('s', 'u', '7'))
})

test('close() stops the watcher; reloadIfChanged() reloads on demand', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-api-'))
  const file = path.join(dir, 'flags.json')
  fs.writeFileSync(file, JSON.stringify({ ...DOCUMENT, revision: 'r1' }))
  const flags = Flags.fromFile(file)
  assert.equal(flags.status().watching, true)
  flags.close()
  assert.equal(flags.status().watching, false)
  assert.equal(flags.reloadIfChanged(), false)
  fs.writeFileSync(file, JSON.stringify({ ...DOCUMENT, revision: 'r2-longer' }))
  assert.equal(flags.reloadIfChanged(), true)
  assert.equal(flags.variant('chat-model', {}).revision, 'r2-longer')
  fs.writeFileSync(file, '{"flags": {"x": 1}}')
  assert.throws(() => flags.reloadIfChanged(), (err) => err.code === 'INVALID_DOCUMENT' && err.problems[0].path === 'flags.x')
  assert.equal(flags.variant('chat-model', {}).revision, 'r2-longer', 'the last good document stays')
  assert.equal(Flags.fromObject(DOCUMENT).reloadIfChanged(), false)
  fs.rmSync(dir, { recursive: true })
})

test('buckets up to 2^32-1 survive the packed result exactly', () => {
  const flags = Flags.fromObject({
    flags: {
      big: {
        variants: { low: {}, high: {} },
        default: 'low',
        rules: [{ id: 'halves', split: [{ variant: 'low', weight: 2147483647 }, { variant: 'high', weight: 2147483648 }] }],
      },
    },
  })
  let highest = 0
  for (let i = 0; i < 2000; i++) {
    const v = flags.variant('big', { user_id: `user-${i}` })
    const expected = bucket('big', `user-${i}`, 4294967295)
    assert.equal(v.bucket, expected)
    assert.equal(v.id, expected < 2147483647 ? 'low' : 'high')
    highest = Math.max(highest, v.bucket)
  }
  assert.ok(highest > 2 ** 31, 'buckets above 2^31 were seen')
})
