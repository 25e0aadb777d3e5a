'use strict'
// flagrail/openfeature through the real @openfeature/server-sdk: the evaluation details the
// SDK documents (value, variant, reason, errorCode / errorMessage, flagMetadata; the
// caller's default on any error), provider events on reload and on a rejected document, and
// track forwarded to feedback. The same cases as tests/python/test_openfeature.py.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { afterEach, test } = require('node:test')

const { OpenFeature, ProviderEvents, ErrorCode, StandardResolutionReasons, ProviderStatus } = require('@openfeature/server-sdk')

const { Flags } = require('..')
// Through the package's "exports" map, as users require it.
const { FlagrailProvider } = require('flagrail/openfeature')

function document(revision = 'r1') {
  return {
    revision,
    flags: {
      'support-bot': {
        variants: {
          stable: { model: 'model-a', temperature: 0.2, max_tokens: 800, tools: ['search'] },
          candidate: { model: 'model-b', temperature: 0.7, max_tokens: 800, tools: [] },
          human: { ai: false },
        },
        default: 'stable',
        kill: { active: false, serve: 'human' },
        rules: [
          { id: 'pro-first', when: { attr: 'plan', op: 'eq', value: 'pro' }, serve: 'candidate' },
          { id: 'half', split: [{ variant: 'stable', percent: 50 }, { variant: 'candidate', percent: 50 }] },
        ],
      },
      'dark-mode': { variants: { on: true, off: false }, default: 'on' },
      retries: { variants: { few: 2, many: 5 }, default: 'many' },
      ratio: { variants: { low: 0.25 }, default: 'low' },
      launch: {
        variants: { before: 'old', after: 'new' },
        default: 'before',
        rules: [{ id: 'dated', when: { attr: 'now', op: 'after', value: '2026-01-01T00:00:00Z' }, serve: 'after' }],
      },
    },
  }
}

async function clientFor(provider) {
  await OpenFeature.setProviderAndWait(provider)
  return OpenFeature.getClient()
}

afterEach(async () => {
  await OpenFeature.close()
  OpenFeature.clearHandlers?.()
})

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
async function waitFor(predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = predicate()
    if (value) return value
    await sleep(10)
  }
  throw new Error(`timed out waiting for ${what}`)
}

test('object resolution is the payload, with variant, reason and metadata', async () => {
  const flags = Flags.fromObject(document())
  const client = await clientFor(new FlagrailProvider(flags))
  const details = await client.getObjectDetails('support-bot', {}, { targetingKey: 'u-1', plan: 'pro' })
  assert.deepEqual(details.value, { model: 'model-b', temperature: 0.7, max_tokens: 800, tools: [] })
  assert.equal(details.variant, 'candidate')
  assert.equal(details.reason, StandardResolutionReasons.TARGETING_MATCH)
  assert.equal(details.errorCode, undefined)
  assert.deepEqual({ ...details.flagMetadata }, { revision: 'r1', flagrail_reason: 'TARGETING_MATCH', rule_id: 'pro-first' })
})

test('the targeting key is the unit', async () => {
  const flags = Flags.fromObject(document())
  let client = await clientFor(new FlagrailProvider(flags))
  for (const unit of ['u-1', 'u-2', 'u-3', 'u-4', 'u-5', 'u-6']) {
    const details = await client.getStringDetails('support-bot', 'fallback', { targetingKey: unit })
    const direct = flags.variant('support-bot', { user_id: unit })
    assert.equal(details.reason, StandardResolutionReasons.SPLIT)
    assert.equal(details.value, direct.id)
    assert.equal(details.flagMetadata.bucket, direct.bucket)
    assert.equal(details.flagMetadata.rule_id, 'half')
  }
  client = await clientFor(new FlagrailProvider(flags, { targetingKeyAttribute: 'conversation_id' }))
  const details = await client.getStringDetails('support-bot', 'fallback', { targetingKey: 'u-1' })
  assert.equal(details.reason, StandardResolutionReasons.DEFAULT) // no user_id: the split is skipped
})

test('string is the variant id or the configured payload field', async () => {
  const flags = Flags.fromObject(document())
  const ctx = { targetingKey: 'u-1', plan: 'pro' }
  let client = await clientFor(new FlagrailProvider(flags, { fields: { 'support-bot': 'model' } }))
  assert.equal(await client.getStringValue('support-bot', 'x', ctx), 'model-b')
  assert.equal(await client.getNumberValue('support-bot', 0, ctx), 0) // "model" is a string
  client = await clientFor(new FlagrailProvider(flags))
  assert.equal(await client.getStringValue('support-bot', 'x', ctx), 'candidate')
})

test('boolean and number resolution read scalar payloads; a flag without rules is STATIC', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document())))
  const details = await client.getBooleanDetails('dark-mode', false)
  assert.equal(details.value, true)
  assert.equal(details.variant, 'on')
  assert.equal(details.reason, StandardResolutionReasons.STATIC)
  assert.equal(await client.getNumberValue('retries', 0), 5)
  assert.equal(await client.getNumberValue('ratio', 0), 0.25)
})

test('a payload field for numbers', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document()), { fields: { 'support-bot': 'temperature' } }))
  assert.equal(await client.getNumberValue('support-bot', 1, { targetingKey: 'u-1', plan: 'pro' }), 0.7)
})

test('an unknown flag returns the default with FLAG_NOT_FOUND', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document())))
  const details = await client.getBooleanDetails('no-such-flag', true)
  assert.equal(details.value, true)
  assert.equal(details.reason, StandardResolutionReasons.ERROR)
  assert.equal(details.errorCode, ErrorCode.FLAG_NOT_FOUND)
  assert.match(details.errorMessage, /no-such-flag/)
  assert.equal(details.variant, undefined)
})

test('a type mismatch returns the default', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document())))
  const details = await client.getBooleanDetails('support-bot', false, { targetingKey: 'u-1' })
  assert.equal(details.value, false)
  assert.equal(details.reason, StandardResolutionReasons.ERROR)
  assert.equal(details.errorCode, ErrorCode.TYPE_MISMATCH)
  assert.match(details.errorMessage, /not a boolean/)
  assert.equal((await client.getBooleanDetails('retries', false)).errorCode, ErrorCode.TYPE_MISMATCH)
  assert.equal(await client.getNumberValue('dark-mode', 7), 7)
  assert.deepEqual(await client.getObjectValue('retries', { d: 1 }), { d: 1 })
})

test('a missing payload field is a GENERAL error', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document()), { fields: { 'support-bot': 'prompt' } }))
  const details = await client.getStringDetails('support-bot', 'dflt', { targetingKey: 'u-1' })
  assert.equal(details.value, 'dflt')
  assert.equal(details.errorCode, ErrorCode.GENERAL)
  assert.match(details.errorMessage, /"prompt"/)
})

test('a killed flag reads DISABLED with its kill source', async () => {
  const flags = Flags.fromObject(document())
  const client = await clientFor(new FlagrailProvider(flags))
  flags.kill('support-bot', { reason: 'incident' })
  const details = await client.getStringDetails('support-bot', 'x', { targetingKey: 'u-1', plan: 'pro' })
  assert.equal(details.value, 'human')
  assert.equal(details.reason, StandardResolutionReasons.DISABLED)
  assert.equal(details.flagMetadata.flagrail_reason, 'KILLED')
  assert.equal(details.flagMetadata.kill_source, 'local-flag')
})

test('dates in the context are compared as timestamps', async () => {
  const client = await clientFor(new FlagrailProvider(Flags.fromObject(document())))
  assert.equal(await client.getStringValue('launch', 'x', { targetingKey: 'u', now: new Date('2026-06-01T00:00:00Z') }), 'after')
  assert.equal(await client.getStringValue('launch', 'x', { targetingKey: 'u', now: new Date('2025-06-01T00:00:00Z') }), 'before')
})

test('a reload emits ConfigurationChanged, a rejected document Stale, the next good one Ready', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-of-'))
  const file = path.join(dir, 'flags.json')
  const write = (text) => {
    fs.writeFileSync(`${file}.tmp`, text)
    fs.renameSync(`${file}.tmp`, file)
  }
  write(JSON.stringify(document('r1')))
  const flags = Flags.fromFile(file, { reload: false })
  try {
    const seen = []
    for (const event of [ProviderEvents.ConfigurationChanged, ProviderEvents.Stale, ProviderEvents.Ready]) {
      OpenFeature.addHandler(event, (details) => seen.push([event, details]))
    }
    const client = await clientFor(new FlagrailProvider(flags, { statusIntervalMs: 5 }))
    await waitFor(() => seen.length > 0, 'ready')
    seen.length = 0

    write(JSON.stringify(document('r2')))
    assert.equal(flags.reloadIfChanged(), true)
    const [, changed] = await waitFor(() => seen.find(([e]) => e === ProviderEvents.ConfigurationChanged), 'changed')
    assert.deepEqual({ ...changed.metadata }, { revision: 'r2', previous_revision: 'r1' })
    assert.equal(changed.providerName, 'flagrail')
    assert.equal((await client.getObjectDetails('support-bot', {}, { targetingKey: 'u-1' })).flagMetadata.revision, 'r2')

    write('{"revision": "r3", "flags": {"x": {"variants": {}, "default": "nope"}}}')
    assert.throws(() => flags.reloadIfChanged())
    const [, stale] = await waitFor(() => seen.find(([e]) => e === ProviderEvents.Stale), 'stale')
    assert.equal(stale.errorCode, ErrorCode.PARSE_ERROR)
    assert.equal(stale.metadata.revision, 'r2')
    assert.equal(client.providerStatus, ProviderStatus.STALE)
    assert.equal(await client.getStringValue('dark-mode', 'x'), 'on') // the last good document serves

    seen.length = 0
    write(JSON.stringify(document('r4')))
    assert.equal(flags.reloadIfChanged(), true)
    await waitFor(() => seen.length >= 2, 'ready and changed')
    assert.deepEqual(
      seen.map(([e]) => e),
      [ProviderEvents.Ready, ProviderEvents.ConfigurationChanged],
    )
    assert.equal(client.providerStatus, ProviderStatus.READY)
  } finally {
    flags.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('track forwards feedback to the run; bad values never throw', async () => {
  const flags = Flags.fromObject(document())
  const client = await clientFor(new FlagrailProvider(flags))
  const events = []
  flags.onEvent((e) => events.push(e))
  const r = await flags.call('support-bot', { user_id: 'u-1' }, async () => 'answer')
  client.track('thumbs', { targetingKey: 'u-1' }, { value: 1, run_id: r.runId })
  client.track('quality', { targetingKey: 'u-1' }, { value: 0.8, run_id: r.runId })
  const feedback = () => events.filter((e) => e.type === 'feedback')
  assert.deepEqual(
    feedback().map((e) => [e.run_id, e.score ?? null, e.quality ?? null]),
    [
      [r.runId, 1, null],
      [r.runId, null, 0.8],
    ],
  )
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  try {
    client.track('thumbs', { targetingKey: 'u-1' }, { value: 5, run_id: r.runId })
    client.track('thumbs', { targetingKey: 'u-1' }, { value: 1, run_id: 'nope' })
    client.track('thumbs', { targetingKey: 'u-1' }, { value: 1 })
    await sleep(10)
  } finally {
    process.off('warning', onWarning)
  }
  assert.equal(feedback().length, 2)
  assert.equal(warnings.filter((w) => w.code === 'FLAGRAIL_TRACK').length, 1) // the out-of-range score
})

test('metadata and bad arguments', () => {
  const flags = Flags.fromObject(document())
  const provider = new FlagrailProvider(flags)
  assert.equal(provider.metadata.name, 'flagrail')
  assert.equal(provider.flags, flags)
  assert.throws(() => new FlagrailProvider('flags.json'), TypeError)
  assert.throws(() => new FlagrailProvider(flags, { fields: { 'support-bot': '' } }), TypeError)
})

test('a URL source whose polls fail is Stale, and Ready again once one succeeds', async () => {
  // The server is a child process: fromUrl blocks this thread until the first document.
  const net = require('node:net')
  const { spawn } = require('node:child_process')
  const port = await new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address()
      probe.close(() => resolve(free))
    })
    probe.on('error', reject)
  })
  const body = JSON.stringify(document('u1'))
  const serve = () => {
    const child = spawn(
      process.execPath,
      ['-e', `require('node:http').createServer((q, s) => { s.setHeader('content-type', 'application/json'); s.end(${JSON.stringify(body)}) }).listen(${port}, '127.0.0.1', () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    return new Promise((resolve) => child.stdout.once('data', () => resolve(child)))
  }
  let server = await serve()
  const flags = Flags.fromUrl(`http://127.0.0.1:${port}/flags.json`, { pollIntervalMs: 20 })
  try {
    const seen = []
    for (const event of [ProviderEvents.Stale, ProviderEvents.Ready]) {
      OpenFeature.addHandler(event, (details) => seen.push([event, details]))
    }
    const client = await clientFor(new FlagrailProvider(flags, { statusIntervalMs: 10 }))
    await waitFor(() => seen.length > 0, 'ready')
    seen.length = 0
    server.kill()
    await new Promise((resolve) => server.once('exit', resolve))
    const [, stale] = await waitFor(() => seen.find(([e]) => e === ProviderEvents.Stale), 'stale')
    assert.equal(stale.errorCode, ErrorCode.GENERAL)
    assert.equal(client.providerStatus, ProviderStatus.STALE)
    assert.equal(await client.getStringValue('dark-mode', 'x'), 'on') // the last good document serves
    server = await serve()
    await waitFor(() => seen.find(([e]) => e === ProviderEvents.Ready), 'ready again')
    assert.equal(client.providerStatus, ProviderStatus.READY)
  } finally {
    flags.close()
    server.kill()
  }
})
