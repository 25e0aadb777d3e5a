'use strict'
// Signed file sources: `Flags.fromFile(path, { verifyKey })` serves only a document whose
// `<path>.sig` is its signature by the key, with the codes of `fromUrl`; a document replaced
// before its signature is rejected (status says why) until the pair matches, then accepted.
// Keys and signatures are made with node:crypto, a second implementation of ed25519.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')
const { setTimeout: sleep } = require('node:timers/promises')

const { Flags, FlagrailError } = require('..')

// Liveness bound only: nothing here asserts on speed.
const BOUND_MS = 20000

const doc = (revision) => JSON.stringify({ revision, flags: { chat: { variants: { a: { rev: revision } }, default: 'a' } } })

function keyPair() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519')
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
  return { verifyKey: `ed25519:${raw.toString('hex')}`, sign: (text) => `ed25519:${crypto.sign(null, Buffer.from(text), privateKey).toString('hex')}\n` }
}

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

function codeOf(fn) {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof FlagrailError, String(err))
    return err.code
  }
  return null
}

test('fromFile with verifyKey refuses unsigned, wrongly signed, tampered and older documents', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-sig-'))
  const file = path.join(dir, 'flags.json')
  const key = keyPair()
  replace(file, doc('r1'))
  assert.equal(codeOf(() => Flags.fromFile(file, { verifyKey: key.verifyKey })), 'SIGNATURE_INVALID')
  replace(`${file}.sig`, key.sign(doc('r1')))
  const flags = Flags.fromFile(file, { verifyKey: key.verifyKey, reload: false })
  assert.equal(flags.revision, 'r1')
  flags.close()
  assert.equal(codeOf(() => Flags.fromFile(file, { verifyKey: keyPair().verifyKey })), 'SIGNATURE_INVALID')
  // One byte changed after signing.
  replace(file, doc('r1').replace('r1', 'r9'))
  assert.equal(codeOf(() => Flags.fromFile(file, { verifyKey: key.verifyKey })), 'SIGNATURE_INVALID')
  // A newer document beside the signature of an older one.
  replace(file, doc('r2'))
  assert.equal(codeOf(() => Flags.fromFile(file, { verifyKey: key.verifyKey })), 'SIGNATURE_INVALID')
  assert.equal(codeOf(() => Flags.fromFile(file, { verifyKey: 'ssh-ed25519 AAAA' })), 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromFile(file, { verifyKey: 42 }), /verifyKey must be a string/)
})

test('a document replaced before its signature goes live only with it, without flapping', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-sig-'))
  const file = path.join(dir, 'flags.json')
  const key = keyPair()
  replace(file, doc('r1'))
  replace(`${file}.sig`, key.sign(doc('r1')))
  const flags = Flags.fromFile(file, { verifyKey: key.verifyKey, pollInterval: 10 })
  try {
    replace(file, doc('r2'))
    await until('the rejection', () => flags.status().last_error?.code === 'SIGNATURE_INVALID')
    assert.equal(flags.revision, 'r1')
    assert.equal(flags.variant('chat', { user_id: 'u' }).payload.rev, 'r1')
    const rejected = flags.status().rejected
    await sleep(100)
    assert.equal(flags.status().rejected, rejected, 'an unchanged pair is not judged again')
    replace(`${file}.sig`, key.sign(doc('r2')))
    await until('the signed pair', () => flags.revision === 'r2')
    assert.equal(flags.status().last_error, null)
  } finally {
    flags.close()
  }
})
