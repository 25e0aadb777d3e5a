'use strict'
// `diff(old, new, options)`: the change review of `flagrail diff` (tests/cross/test_diff_cross.py
// checks that it equals the CLI's and Python's; this checks the Node side of the arguments).

const assert = require('node:assert/strict')
const { test } = require('node:test')

const { diff, FlagrailError } = require('..')

function document(revision, salt) {
  return {
    revision,
    flags: {
      chat: {
        bucket_by: 'user_id',
        salt,
        variants: { control: {}, treatment: {} },
        default: 'control',
        rules: [{ id: 'split', split: [{ variant: 'control', percent: 50 }, { variant: 'treatment', percent: 50 }] }],
      },
    },
  }
}

const OLD = document('r1', 'chat')
const NEW = document('r2', 'chat/2')
const AT = new Date(Date.UTC(2026, 11, 1))

test('a salt change re-buckets about half the units and is dangerous', () => {
  const review = diff(OLD, NEW, { users: 2000, seed: 3, at: AT })
  assert.equal(review.units, 2000)
  assert.equal(review.at, '2026-12-01T00:00:00Z')
  assert.equal(review.dangerous, true)
  assert.deepEqual(review.dangers.map((d) => d.code), ['REBUCKET'])
  const moved = review.flags[0].moved
  // Two independent 50/50 draws disagree for about half the units.
  assert.ok(moved > 800 && moved < 1200, `moved ${moved}`)
  assert.deepEqual(diff(OLD, NEW, { users: 2000, seed: 3, at: '2026-12-01T00:00:00Z' }), review)
})

test('an unchanged document moves nobody and is not dangerous', () => {
  const review = diff(OLD, { ...OLD, revision: 'r1b' }, { users: 100, at: AT })
  assert.equal(review.dangerous, false)
  assert.deepEqual(review.flags, [])
  assert.deepEqual(review.dangers, [])
})

test('a population may be any iterable of contexts', () => {
  const units = new Set([{ user_id: 'a' }, { user_id: 'b' }, { user_id: 'c' }])
  const review = diff(OLD, NEW, { population: units, at: AT })
  assert.equal(review.units, 3)
  assert.deepEqual(diff(OLD, NEW, { population: [...units], at: AT }), review)
})

test('bad arguments are INVALID_ARGUMENT', () => {
  const bad = [
    [{ users: '10' }, 'users must be a number, got string'],
    [{ seed: 1.5 }, 'seed must be a whole number from 0 to 2^53 - 1, got 1.5'],
    [{ users: 2.5 }, 'users must be a whole number from 1 to 1000000, got 2.5'],
    [{ population: 'a,b' }, 'population must be an array (or other iterable) of contexts'],
    [{ at: 12 }, 'at must be a Date or an RFC 3339 string, not number'],
  ]
  for (const [options, message] of bad) {
    assert.throws(() => diff(OLD, NEW, options), (err) => {
      assert.ok(err instanceof FlagrailError)
      assert.equal(err.code, 'INVALID_ARGUMENT')
      assert.equal(err.message, message)
      return true
    })
  }
  assert.throws(() => diff(undefined, NEW), /old must be a JSON value, got undefined/)
})
