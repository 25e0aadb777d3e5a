'use strict'
// status() and explain() show the autopilot's last written decision (the ramp's
// `last_decision`, which `flagrail autopilot` writes with each decision), as in Python.

const assert = require('node:assert/strict')
const { test } = require('node:test')

const { Flags } = require('..')

const LAST = {
  decision: 'roll_back',
  reason: 'proven_regression',
  at: '2026-12-01T09:30:00Z',
  step: 0,
  percent: 5,
  actor: 'autopilot',
  samples: { control: 1000, candidate: 60 },
  metrics: [
    { metric: 'quality', status: 'regression', estimate: -0.2, interval: [-0.25, -0.15], limit: -0.03 },
  ],
}

function document(lastDecision) {
  const ramp = {
    variant: 'v2',
    baseline: 'stable',
    start: '2026-12-01T09:00:00Z',
    paused_at: '2026-12-01T09:00:00Z',
    steps: [{ percent: 5, hold: '1h' }, { percent: 100 }],
    autopilot: {
      holds: [{ min: '30m', max: '4h' }],
      metrics: [{ metric: 'quality', difference: 0.03 }],
    },
  }
  if (lastDecision) {
    ramp.rolled_back = true
    ramp.last_decision = lastDecision
  }
  return {
    revision: 'r1',
    flags: {
      bot: {
        bucket_by: 'user_id',
        variants: { stable: {}, v2: {} },
        default: 'stable',
        rules: [{ id: 'canary', ramp }],
      },
    },
  }
}

test('status() and explain() show the last decision the autopilot wrote', () => {
  const flags = Flags.fromObject(document(LAST))
  const [ramp] = flags.status().autopilot
  assert.equal(ramp.flag, 'bot')
  assert.equal(ramp.state, 'rolled_back')
  assert.deepEqual(ramp.last_decision, { ...LAST, percent: 5.0 })
  const explained = flags.explain('bot', { user_id: 'u1' }, { at: '2026-12-01T10:00:00Z' })
  const step = explained.steps.find((s) => s.step === 'ramp')
  assert.equal(step.autopilot.last_decision.decision, 'roll_back')
  assert.equal(step.autopilot.last_decision.at, '2026-12-01T09:30:00Z')
  flags.close()
})

test('before any written decision last_decision is null, and a bad record is refused with its path', () => {
  const flags = Flags.fromObject(document(null))
  assert.equal(flags.status().autopilot[0].last_decision, null)
  flags.close()
  assert.throws(
    () => Flags.fromObject(document({ ...LAST, at: 'yesterday' })),
    (err) => err.problems.some((p) => p.path === 'flags.bot.rules[0].ramp.last_decision.at' && p.code === 'INVALID_DATE'),
  )
})
