'use strict'
// The quickstart of bindings-node/README.md runs as written, from the repository root.

const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')

test('the README quickstart runs as written', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const code = /```js\n([\s\S]*?)```/.exec(readme)[1]
  assert.ok(code.split('\n').filter(Boolean).length <= 10, 'the quickstart stays within 10 lines')
  const run = spawnSync(process.execPath, ['-e', code], { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8', timeout: 20000 })
  assert.equal(run.signal, null, run.stderr)
  assert.equal(run.status, 0, run.stderr)
  const lines = run.stdout.trim().split('\n')
  assert.equal(lines.length, 4, run.stdout)
  assert.equal(lines[0], 'v2.2 SPLIT claude-opus-4 2026-11-21.1')
  assert.equal(lines[1], 'v2.1')
  assert.match(lines[2], /^\d+ steps$/)
  assert.equal(lines[3], 'human KILLED')
})

test('the root README Node quickstart runs as written', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8')
  const code = /## Node quickstart\n\n```js\n([\s\S]*?)```/.exec(readme)[1]
  assert.ok(code.split('\n').filter(Boolean).length <= 10, 'the quickstart stays within 10 lines')
  const run = spawnSync(process.execPath, ['-e', code], { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8', timeout: 20000 })
  assert.equal(run.status, 0, run.stderr)
  const lines = run.stdout.trim().split('\n')
  assert.equal(lines[0], 'v2.2 claude-opus-4 SPLIT canary 2026-11-21.1')
  assert.equal(lines[1], 'support/v2.2')
  assert.equal(lines[2], "answer from claude-opus-4 v2.2 [ 'success' ] 1")
})
