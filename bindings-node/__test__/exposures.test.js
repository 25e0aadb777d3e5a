'use strict'
// Exposures of plain reads (`{ exposures }` on the loaders): events delivered to onEvent after
// the read (never inside it), deduplication per unit, flag and revision within the window,
// deterministic sampling, per-variant counts (docs/runtime.md, "Exposures of plain reads").
// Windows are driven with `{ at }`, never with sleeps.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')

const { Flags, FlagrailError, bucket } = require('..')

const DOCUMENT = {
  revision: 'r1',
  flags: {
    'chat-model': {
      bucket_by: 'user_id',
      variants: { control: { model: 'm-a' }, v2: { model: 'm-b' } },
      default: 'control',
      rules: [
        { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: 'v2' },
        { id: 'split', split: [{ variant: 'control', percent: 50 }, { variant: 'v2', percent: 50 }] },
      ],
    },
    tone: {
      bucket_by: 'user_id',
      variants: { plain: {}, warm: {} },
      default: 'plain',
      rules: [{ id: 'split', split: [{ variant: 'plain', percent: 50 }, { variant: 'warm', percent: 50 }] }],
    },
  },
}

const T0 = Date.UTC(2026, 11, 4, 9, 0, 0)
const at = (ms) => ({ at: new Date(T0 + ms) })

function handle(exposures = true) {
  const flags = Flags.fromObject(DOCUMENT, { exposures })
  const events = []
  flags.onEvent((event) => events.push(event))
  return { flags, events }
}

const reads = (events) => events.filter((e) => e.type === 'exposure' && e.source === 'read')

/** Lets the queued-events notice reach the listeners (a turn or two of the event loop). */
async function delivered() {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

test('a read sends an exposure after it returns, with the fields of a call exposure', async () => {
  const { flags, events } = handle()
  const v = flags.variant('chat-model', { user_id: 'u-1', segment: 'external' }, undefined, at(0))
  assert.deepEqual(events, [], 'never delivered inside variant()')
  await delivered()
  assert.deepEqual(reads(events), [
    {
      type: 'exposure',
      time: '2026-12-04T09:00:00Z',
      run_id: null,
      flag: 'chat-model',
      variant: v.id,
      revision: 'r1',
      reason: 'SPLIT',
      rule_id: 'split',
      bucket: v.bucket,
      model: v.payload.model,
      shadow: false,
      unit: 'u-1',
      segment: 'external',
      source: 'read',
    },
  ])
  await flags.call('chat-model', { user_id: 'u-1' }, async () => 'ok')
  const run = events.find((e) => e.type === 'exposure' && e.source === 'run')
  assert.deepEqual(Object.keys(run), Object.keys(reads(events)[0]))
  assert.ok(run.run_id)
  assert.equal(reads(events).length, 1)
})

test('one event per unit, flag and revision within the window', async () => {
  const { flags, events } = handle({ windowMs: 60_000 })
  const user = { user_id: 'u-1', segment: 'external' }
  for (const ms of [0, 1000, 59_999]) flags.variant('chat-model', user, undefined, at(ms))
  flags.variant('tone', user, undefined, at(0))
  flags.variant('chat-model', { user_id: 'u-2' }, undefined, at(0))
  flags.variant('chat-model', user, undefined, at(60_000))
  await delivered()
  assert.deepEqual(
    reads(events).map((e) => [e.flag, e.unit, e.time]),
    [
      ['chat-model', 'u-1', '2026-12-04T09:00:00Z'],
      ['tone', 'u-1', '2026-12-04T09:00:00Z'],
      ['chat-model', 'u-2', '2026-12-04T09:00:00Z'],
      ['chat-model', 'u-1', '2026-12-04T09:01:00Z'],
    ],
  )
  const { exposures } = flags.status()
  assert.equal(exposures.events, 4)
  assert.equal(exposures.duplicates, 2)
  assert.equal(exposures.reads, 6)
})

test('sampling is the bucketing of "<flag>/exposure", and every re-read agrees', async () => {
  const { flags, events } = handle({ sample: 0.3, windowMs: 1000 })
  const units = Array.from({ length: 3000 }, (_, i) => `user-${i}`).concat(['josé', '🙂', '42'])
  for (const ms of [0, 5000]) {
    for (const unit of units) flags.variant('chat-model', { user_id: unit }, undefined, at(ms))
  }
  await delivered()
  const expected = new Set(units.filter((u) => bucket('chat-model/exposure', u, 100000) < 30000))
  const counts = new Map()
  for (const e of reads(events)) counts.set(e.unit, (counts.get(e.unit) ?? 0) + 1)
  assert.deepEqual(new Set(counts.keys()), expected)
  assert.ok([...counts.values()].every((n) => n === 2))
  assert.ok(expected.size > 800 && expected.size < 1000, String(expected.size))
  assert.equal(flags.status().exposures.not_sampled, 2 * (units.length - expected.size))
})

test('every read is counted per variant, in status() and metricsText()', async () => {
  const { flags, events } = handle({ sample: 0 })
  const served = {}
  const count = (id) => (served[id] = (served[id] ?? 0) + 1)
  for (let i = 0; i < 100; i++) count(flags.variant('chat-model', { user_id: `u-${i % 10}` }, undefined, at(0)).id)
  count(flags.variants({ user_id: 'u-1' }, ['chat-model', 'tone'], at(0))['chat-model'].id)
  count(flags.all({ user_id: 'u-2' }, at(0))['chat-model'].id)
  flags.variant('missing', { user_id: 'u-1' })
  await delivered()
  assert.deepEqual(reads(events), [])
  const { exposures } = flags.status()
  assert.deepEqual(exposures.flags['chat-model'], served)
  assert.equal(Object.values(exposures.flags.tone).reduce((a, b) => a + b, 0), 2)
  assert.equal(exposures.reads, 104)
  assert.deepEqual([exposures.window_ms, exposures.sample, exposures.max_keys], [3_600_000, 0, 100_000])
  const text = flags.metricsText()
  assert.ok(text.includes(`flagrail_exposures_total{flag="chat-model",variant="control"} ${served.control}\n`), text)
  assert.ok(text.includes('flagrail_exposure_events_total 0\n'))
  assert.deepEqual(flags.metrics().$exposures, flags.status().exposures)
})

test('a flag that decides without the unit still exposes it', async () => {
  // `plan` only: evaluation reads neither `user_id` nor `segment`, a read with exposures on does.
  const flags = Flags.fromObject(
    {
      revision: 'r1',
      flags: {
        'by-plan': {
          variants: { basic: {}, pro: {} },
          default: 'basic',
          rules: [{ id: 'pro', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'pro' }],
        },
      },
    },
    { exposures: true },
  )
  const events = []
  flags.onEvent((e) => events.push(e))
  flags.variant('by-plan', { user_id: 'u-7', plan: 'pro', segment: 'beta' })
  flags.flag('by-plan').variant({ user_id: 8, plan: 'free' })
  flags.variant('by-plan', { user_id: 'u-9', plan: 'pro' }, undefined, { at: new Date(T0) })
  // Several flags at once read the unit and the label too: the one-call plan path (`variants`,
  // `all`) and the careful path (`at`).
  flags.variants({ user_id: 'u-10', plan: 'pro', segment: 'beta' }, ['by-plan'])
  flags.all({ user_id: 'u-11', segment: 'gamma' })
  flags.variants({ user_id: 12, plan: 'pro' }, ['by-plan'], { at: new Date(T0) })
  await delivered()
  assert.deepEqual(
    reads(events).map((e) => [e.unit, e.segment, e.variant, e.reason]),
    [
      ['u-7', 'beta', 'pro', 'TARGETING_MATCH'],
      ['8', null, 'basic', 'DEFAULT'],
      ['u-9', null, 'pro', 'TARGETING_MATCH'],
      ['u-10', 'beta', 'pro', 'TARGETING_MATCH'],
      ['u-11', 'gamma', 'basic', 'DEFAULT'],
      ['12', null, 'pro', 'TARGETING_MATCH'],
    ],
  )
  assert.equal(flags.status().exposures.no_unit, 0)
})

test('reads without a unit are counted without an event', async () => {
  const { flags, events } = handle()
  flags.variant('chat-model', { segment: 'internal' })
  await delivered()
  assert.deepEqual(reads(events), [])
  assert.equal(flags.status().exposures.no_unit, 1)
})

test('off by default; a test override is not an exposure', async () => {
  const flags = Flags.fromObject(DOCUMENT)
  const events = []
  flags.onEvent((e) => events.push(e))
  flags.variant('chat-model', { user_id: 'u-1' })
  await delivered()
  assert.deepEqual(events, [])
  assert.equal(flags.status().exposures, null)
  assert.equal('$exposures' in flags.metrics(), false)
  assert.ok(!flags.metricsText().includes('flagrail_exposures_total'))
  const on = handle()
  on.flags.override('chat-model', 'v2', () => on.flags.variant('chat-model', { user_id: 'u-1' }))
  await delivered()
  assert.deepEqual(reads(on.events), [])
})

test('bad options throw INVALID_ARGUMENT', () => {
  for (const [exposures, message] of [
    [{ windowMs: 0 }, /windowMs must be a duration/],
    [{ sample: 1.5 }, /sample must be a share from 0 to 1, got 1.5/],
    [{ sample: NaN }, /sample/],
    [{ maxKeys: 1 }, /maxKeys must be a whole number from 2/],
    [{ maxKeys: 10.5 }, /maxKeys/],
    [{ windw: 1 }, /unknown option "windw"/],
    [{ sample: 'all' }, /sample must be a number/],
    ['yes', /exposures must be an object/],
  ]) {
    assert.throws(
      () => Flags.fromObject(DOCUMENT, { exposures }),
      (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT' && message.test(err.message),
      JSON.stringify(exposures),
    )
  }
})

test('every loader takes the option', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-exposures-'))
  const file = path.join(dir, 'flags.json')
  fs.writeFileSync(file, JSON.stringify(DOCUMENT))
  try {
    for (const flags of [
      Flags.fromFile(file, { reload: false, exposures: { windowMs: 10_000 } }),
      Flags.fromJson(JSON.stringify(DOCUMENT), { exposures: { windowMs: 10_000 } }),
      Flags.fromJson(Buffer.from(JSON.stringify(DOCUMENT)), { exposures: true }),
      Flags.forTests({ 'chat-model': 'v2' }, { exposures: true }),
    ]) {
      flags.variant('chat-model', { user_id: 'u-1' })
      assert.equal(flags.status().exposures.reads, 1)
      flags.close()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
