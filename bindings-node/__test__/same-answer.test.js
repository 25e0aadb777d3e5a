'use strict'
// Behaviours that must be identical in Node and Python (tests/python/test_same_answer.py asserts
// the same things there): lone surrogates, unknown flags, loader verdicts, document limits.

const assert = require('node:assert/strict')
const { test } = require('node:test')

const { Flags, FlagrailError, bucket } = require('..')

const DOCUMENT = {
  revision: 'same-1',
  flags: {
    split: {
      variants: { a: { model: 'm-a' }, b: { model: 'm-b' } },
      default: 'a',
      rules: [{ id: 'all', split: [{ variant: 'b', percent: 100 }] }],
    },
    match: {
      variants: { a: {}, b: {} },
      default: 'a',
      rules: [{ id: 'x', when: { attr: 'name', op: 'eq', value: 'x\ufffd' }, serve: 'b' }],
    },
    list: {
      variants: { a: {}, b: {} },
      default: 'a',
      rules: [{ id: 'l', when: { attr: 'tags', op: 'contains', value: 'x\ufffd' }, serve: 'b' }],
    },
  },
}

const LONE = ['\ud800', 'user-\udfff', '\udc80x', 'x'.repeat(200) + '\ud800']

test('a unit with a lone surrogate skips the split (docs/bucketing.md §2), through every entry', () => {
  const flags = Flags.fromObject(DOCUMENT)
  for (const unit of LONE) {
    const v = flags.variant('split', { user_id: unit })
    assert.deepEqual([v.id, v.reason, v.bucket], ['a', 'DEFAULT', null], JSON.stringify(unit))
    // The `at` path reads values through another entry point.
    const at = flags.variant('split', { user_id: unit }, null, { at: new Date() })
    assert.deepEqual([at.id, at.reason], ['a', 'DEFAULT'])
    assert.equal(flags.explain('split', { user_id: unit }).reason, 'DEFAULT')
  }
  assert.equal(flags.variant('split', { user_id: 'u' }).reason, 'SPLIT')
  // A well-formed pair is not a lone surrogate.
  assert.equal(flags.variant('split', { user_id: 'u\ud83d\ude00' }).reason, 'SPLIT')
})

test('a lone surrogate never equals a replacement character', () => {
  const flags = Flags.fromObject(DOCUMENT)
  assert.equal(flags.variant('match', { name: 'x\ufffd' }).id, 'b')
  assert.equal(flags.variant('match', { name: 'x\ud800' }).id, 'a')
  assert.equal(flags.variant('list', { tags: ['x\ufffd'] }).id, 'b')
  assert.equal(flags.variant('list', { tags: ['x\ud800'] }).id, 'a')
})

test('bucket refuses a lone surrogate with INVALID_ARGUMENT', () => {
  for (const [salt, unit] of [['s', '\ud800'], ['s', 'u\udc00'], ['\udfff', 'u']]) {
    assert.throws(
      () => bucket(salt, unit),
      (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT' && /unpaired surrogates/.test(err.message),
    )
  }
  assert.equal(typeof bucket('s', 'u\ud83d\ude00'), 'number')
})

test('feedback for a lone surrogate is an unknown run', () => {
  const flags = Flags.fromObject(DOCUMENT)
  assert.equal(flags.feedback('\ud800'), false)
})

test('an unknown flag has a null payload', () => {
  const flags = Flags.fromObject(DOCUMENT)
  const v = flags.variant('no-such-flag', { user_id: 'u' }, 'fallback')
  assert.equal(v.payload, null)
  assert.equal(v.toJSON().payload, null)
  assert.equal(v.get('model', 'x'), 'x')
  assert.deepEqual(flags.variant('split', { user_id: 'u' }).payload, { model: 'm-b' })
})

/** The verdict of a loader: 'ok', or the error code and its problems' codes. */
function verdict(load) {
  try {
    load()
    return 'ok'
  } catch (err) {
    assert.ok(err instanceof FlagrailError, String(err))
    return `${err.code}: ${(err.problems ?? []).map((p) => p.code).join(',')}`
  }
}

test('fromJson reads bytes itself: invalid UTF-8 is an error, not U+FFFD', () => {
  const text = JSON.stringify({ ...DOCUMENT, revision: 'bad-\u00ff' })
  const bytes = Buffer.from(text, 'utf8')
  // Cut the two bytes of U+00FF down to its lead byte: no longer UTF-8.
  const at = bytes.indexOf(Buffer.from('\u00ff', 'utf8'))
  const invalid = Buffer.concat([bytes.subarray(0, at + 1), bytes.subarray(at + 2)])
  assert.match(verdict(() => Flags.fromJson(invalid)), /^INVALID_DOCUMENT: /)
  assert.equal(verdict(() => Flags.fromJson(new Uint8Array(invalid))), verdict(() => Flags.fromJson(invalid)))
  // Valid bytes load as the text does.
  assert.equal(Flags.fromJson(bytes).variant('split', { user_id: 'u' }).revision, 'bad-\u00ff')
})

test('fromObject gives the verdict of the text loader (the CLI) for whole-number floats', () => {
  for (const weight of ['-0', '0', '1.0', '1', '2.5']) {
    const text = `{"revision":"w","flags":{"f":{"variants":{"a":{},"b":{}},"default":"a","rules":[{"split":[{"variant":"a","weight":${weight}},{"variant":"b","weight":1}]}]}}}`
    assert.equal(verdict(() => Flags.fromObject(JSON.parse(text))), verdict(() => Flags.fromJson(text)), `weight ${weight}`)
  }
})

test('fromObject enforces the document size limit like fromJson', () => {
  const limit = 16 * 1024 * 1024
  const padded = (size) => {
    const doc = JSON.parse(JSON.stringify(DOCUMENT))
    doc.flags.split.description = ''
    doc.flags.split.description = 'd'.repeat(size - Buffer.byteLength(JSON.stringify(doc)))
    return doc
  }
  const over = padded(limit + 1)
  assert.equal(verdict(() => Flags.fromObject(over)), 'INVALID_DOCUMENT: DOCUMENT_TOO_LARGE')
  assert.equal(verdict(() => Flags.fromJson(JSON.stringify(over))), 'INVALID_DOCUMENT: DOCUMENT_TOO_LARGE')
  assert.equal(verdict(() => Flags.fromObject(padded(limit))), 'ok')
})
