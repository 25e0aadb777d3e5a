'use strict'
// Hot reload from a file, its failure modes, and the two process-level promises: a script that
// only evaluates flags exits on its own, and worker threads each load the addon safely.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')

const { Flags } = require('..')

// Liveness bounds only (a hung child or a reload that never lands fails the test); nothing
// here asserts on speed.
const BOUND_MS = 20000

function documentWith(revision, internalVariant) {
  return {
    revision,
    flags: {
      'chat-model': {
        bucket_by: 'user_id',
        variants: { control: {}, v2: {}, v3: {} },
        default: 'control',
        rules: [
          { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: internalVariant },
          { id: 'split', split: [{ variant: 'control', percent: 90 }, { variant: 'v2', percent: 5 }, { variant: 'v3', percent: 5 }] },
        ],
      },
    },
  }
}

function tempFile(document) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-node-'))
  const file = path.join(dir, 'flags.json')
  fs.writeFileSync(file, JSON.stringify(document))
  return file
}

/** Replaces the file atomically, as deploy tools do. */
function replace(file, text) {
  fs.writeFileSync(`${file}.tmp`, text)
  fs.renameSync(`${file}.tmp`, file)
}

async function until(condition) {
  const deadline = Date.now() + BOUND_MS
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(5)
  }
  return true
}

test('a changed file goes live; an invalid one is rejected and the last good one stays', async () => {
  const file = tempFile(documentWith('r1', 'v3'))
  const flags = Flags.fromFile(file, { pollInterval: 10 })
  const internal = { user_id: 'user-0', segment: 'internal' }
  assert.equal(flags.variant('chat-model', internal).id, 'v3')

  replace(file, JSON.stringify(documentWith('r2', 'v2')))
  assert.ok(await until(() => flags.variant('chat-model', internal).revision === 'r2'), 'the new document goes live')
  assert.equal(flags.variant('chat-model', internal).id, 'v2')
  assert.equal(flags.flag('chat-model').variant(internal).id, 'v2')
  assert.equal(flags.explain('chat-model', internal).variant, 'v2')
  assert.equal(flags.status().reloads, 1)

  replace(file, '{"revision": "r3", "flags": {"chat-model": {"variants": {}}}}')
  assert.ok(await until(() => flags.status().rejected >= 1), 'the invalid document is seen')
  const status = flags.status()
  assert.equal(status.revision, 'r2')
  assert.equal(status.last_error.code, 'INVALID_DOCUMENT')
  assert.ok(status.last_error.problems.some((p) => p.path.startsWith('flags.chat-model')))
  assert.equal(flags.variant('chat-model', internal).id, 'v2', 'the last good document keeps serving')

  fs.rmSync(file)
  await sleep(50)
  assert.equal(flags.variant('chat-model', internal).revision, 'r2', 'a vanished file changes nothing')
  flags.close()
  fs.rmSync(path.dirname(file), { recursive: true })
})

test('results built before a reload keep their own revision and payloads', async () => {
  const file = tempFile(documentWith('r1', 'v3'))
  const flags = Flags.fromFile(file, { pollInterval: 10 })
  const old = flags.variant('chat-model', { segment: 'internal' })
  replace(file, JSON.stringify(documentWith('r2-next', 'v2')))
  assert.ok(await until(() => flags.variant('chat-model', {}).revision === 'r2-next'))
  assert.deepEqual([old.id, old.revision], ['v3', 'r1'])
  flags.close()
  fs.rmSync(path.dirname(file), { recursive: true })
})

test('a script that only evaluates flags from a watched file exits on its own', () => {
  const file = tempFile(documentWith('r1', 'v3'))
  const child = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'evaluate-and-exit.js'), file], {
    encoding: 'utf8',
    timeout: BOUND_MS,
  })
  assert.equal(child.signal, null, `the script had to be killed: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  const expected = Flags.fromObject(documentWith('r1', 'v3')).variant('chat-model', { user_id: 'user-1', segment: 'external' })
  assert.deepEqual(JSON.parse(child.stdout), { id: expected.id, revision: 'r1', watching: true })
  fs.rmSync(path.dirname(file), { recursive: true })
})

test('worker threads load the addon, evaluate, see reloads, and the process exits cleanly', () => {
  const file = tempFile(documentWith('r1', 'v3'))
  const workers = 4
  const child = spawnSync(
    process.execPath,
    [path.join(__dirname, 'fixtures', 'workers-main.js'), file, JSON.stringify(documentWith('r2', 'v2')), String(workers)],
    { encoding: 'utf8', timeout: BOUND_MS },
  )
  assert.equal(child.signal, null, `the process had to be killed: ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  assert.deepEqual(JSON.parse(child.stdout), { workers, reloaded: workers })
  fs.rmSync(path.dirname(file), { recursive: true })
})
