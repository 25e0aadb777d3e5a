'use strict'
// A reload is logged as it happens (issue 13: a rejected reload was silent in Node): the core's
// watcher thread pushes it to the JS thread, which logs it with the core's level and text (the
// ones Python's `flagrail` logger gets) and hands the `reload` / `reload_rejected` events to
// onEvent listeners, all without any later call on the handle. Nothing here calls the handle
// while waiting.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')

const { Flags, FlagrailError, setLogger } = require('..')

// Liveness bound only: nothing here asserts on speed.
const BOUND_MS = 20000

const doc = (revision, serve = 'a') => JSON.stringify({ revision, flags: { chat: { variants: { a: {} }, default: serve } } })

function replace(file, text) {
  fs.writeFileSync(`${file}.tmp`, text)
  fs.renameSync(`${file}.tmp`, file)
}

async function until(what, condition) {
  const deadline = Date.now() + BOUND_MS
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

function tempFile(text) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-log-')), 'flags.json')
  fs.writeFileSync(file, text)
  return file
}

test('reloads are logged and sent to onEvent as they happen, with no later call', async (t) => {
  const lines = []
  setLogger({
    info: (m) => lines.push(['info', m]),
    warn: (m) => lines.push(['warn', m]),
    error: (m) => lines.push(['error', m]),
  })
  t.after(() => setLogger(undefined))
  const file = tempFile(doc('r1'))
  const flags = Flags.fromFile(file, { pollInterval: 10 })
  const events = []
  flags.onEvent((e) => events.push(e))
  try {
    replace(file, doc('r2'))
    await until('the reload line', () => lines.length >= 1)
    assert.deepEqual(lines[0], ['info', `flag document reloaded from file:${file}: revision r1 -> r2`])
    await until('the reload event', () => events.some((e) => e.type === 'reload'))

    replace(file, doc('r3', 'nope'))
    await until('the rejection line', () => lines.some(([level]) => level === 'error'))
    const [, message] = lines.find(([level]) => level === 'error')
    assert.match(message, /rejected, the previous revision stays live/)
    assert.match(message, /flags\.chat\.default/)
    assert.match(message, /\[INVALID_DOCUMENT\]$/)
    await until('the reload_rejected event', () => events.some((e) => e.type === 'reload_rejected'))
    assert.equal(events.find((e) => e.type === 'reload_rejected').code, 'INVALID_DOCUMENT')

    fs.unlinkSync(file)
    await until('the unreachable line', () => lines.some(([level]) => level === 'warn'))
    assert.match(lines.find(([level]) => level === 'warn')[1], /\[SOURCE_UNREACHABLE\]$/)
    assert.equal(flags.revision, 'r2')
  } finally {
    flags.close()
  }
})

test('setLogger checks its argument; null silences', async (t) => {
  assert.throws(() => setLogger({ info() {} }), (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT')
  setLogger(null)
  t.after(() => setLogger(undefined))
  const file = tempFile(doc('r1'))
  const flags = Flags.fromFile(file, { pollInterval: 10 })
  const events = []
  flags.onEvent((e) => events.push(e))
  replace(file, doc('r2', 'nope'))
  // The event still arrives (logging is off, not the push).
  await until('the reload_rejected event', () => events.length > 0)
  flags.close()
})

test('by default a rejected reload is written to stderr, in a process that makes no further call', () => {
  const file = tempFile(doc('r1'))
  const script = `
    const fs = require('node:fs')
    const { Flags } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const flags = Flags.fromFile(${JSON.stringify(file)}, { pollInterval: 10 })
    fs.writeFileSync(${JSON.stringify(file)} + '.tmp', '{"revision": "r2", "flags": {')
    fs.renameSync(${JSON.stringify(file)} + '.tmp', ${JSON.stringify(file)})
    // Keep the loop alive for a while without touching flags; exit once stderr has the line.
    const end = Date.now() + ${BOUND_MS}
    const timer = setInterval(() => { if (Date.now() > end) process.exit(3) }, 20)
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = (chunk, ...rest) => {
      const r = write(chunk, ...rest)
      if (String(chunk).includes('rejected')) { clearInterval(timer); flags.close() }
      return r
    }
  `
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: BOUND_MS + 5000 })
  assert.equal(run.status, 0, run.stderr)
  assert.match(run.stderr, /flag document from file:.*rejected, the previous revision stays live: .*\[INVALID_DOCUMENT\]/s)
})
