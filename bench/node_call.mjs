// What `flags.call(...)` adds around the user's function, for Node: ns per call beyond awaiting
// the function itself (`async (v) => 1`), for a variant without `timeout_ms` and for one with it
// (a timer is armed and cleared per attempt). Sequential awaits, one call in flight.
//
//   make build-node-release && node bench/node_call.mjs
//   N=100000 REPS=7 node bench/node_call.mjs
//
// Also `node_call_served_latency`: the wall time of each served call (its function resolves at
// once) on a flag with a shadow at 100 % whose function busy-loops SHADOW_MS (50) ms
// synchronously, against the same flag without the shadow: SHADOW_CALLS calls one at a time
// with a pause longer than the shadow between them (p50, p99, max in µs).
//
// Prints one `RESULT {...}` line per scenario: `ns_per_call` is the median over REPS passes of
// (ns per call through flags.call) - (ns per direct await of the same function), measured in
// alternation so that both see the same machine state. Needs the release addon.

import { createRequire } from 'node:module'

const N = Number(process.env.N ?? 100_000)
const REPS = Number(process.env.REPS ?? 7)
if (!Number.isInteger(N) || N < 1000 || !Number.isInteger(REPS) || REPS < 5) {
  console.error('N must be an integer >= 1000 and REPS an integer >= 5')
  process.exit(2)
}

const require = createRequire(import.meta.url)
const { Flags } = require('../bindings-node')

// One AI variant assigned by a 50/50 split on user_id, a non-AI fallback: the shape of a real
// flag, where the first attempt succeeds.
const flag = (timeout) => ({
  bucket_by: 'user_id',
  variants: {
    a: { model: 'model-a', ...(timeout ? { timeout_ms: 30_000 } : {}) },
    b: { model: 'model-b', ...(timeout ? { timeout_ms: 30_000 } : {}) },
    human: { ai: false },
  },
  default: 'a',
  fallback: ['human'],
  rules: [{ id: 'split', split: [{ variant: 'a', percent: 50 }, { variant: 'b', percent: 50 }] }],
})
const flags = Flags.fromObject({
  revision: 'bench-call-1',
  flags: { 'no-timeout': flag(false), timeout: flag(true) },
})

const ids = Array.from({ length: 1024 }, (_, i) => `user-${i}`)
const fn = async (v) => 1
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const round = (x, digits = 1) => Number(x.toFixed(digits))

let sink = 0

async function direct() {
  const variant = flags.variant('no-timeout', { user_id: ids[0] })
  const start = process.hrtime.bigint()
  for (let i = 0; i < N; i++) sink += await fn(variant, { attempt: 1 })
  return Number(process.hrtime.bigint() - start) / N
}

async function through(key) {
  const start = process.hrtime.bigint()
  for (let i = 0; i < N; i++) {
    const r = await flags.call(key, { user_id: ids[i & 1023] }, fn)
    sink += r.value
  }
  return Number(process.hrtime.bigint() - start) / N
}

async function scenario(name, key) {
  await direct()
  await through(key)
  const reps = []
  for (let r = 0; r < REPS; r++) {
    const base = await direct()
    const total = await through(key)
    reps.push(total - base)
  }
  const metrics = flags.metrics()[key]
  const calls = Object.values(metrics).reduce((n, v) => n + v.requests, 0)
  console.log(
    `RESULT ${JSON.stringify({
      name,
      ns_per_call: round(median(reps)),
      reps: reps.map((x) => round(x)),
      n: N,
      recorded_calls: calls,
    })}`,
  )
}

const SHADOW_MS = 50
const SHADOW_CALLS = 40

function busy(ms) {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // synchronous work, as a shadow's parsing or scoring would be
  }
}

function latencyStats(samples) {
  const s = [...samples].sort((a, b) => a - b)
  return {
    p50_us: round(median(s)),
    p99_us: round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]),
    max_us: round(s[s.length - 1]),
  }
}

async function servedLatency() {
  const found = {}
  for (const [label, shadow] of [
    ['without_shadow', false],
    ['with_blocking_shadow', true],
  ]) {
    const f = Flags.fromObject({
      flags: {
        bot: {
          variants: { stable: {}, cand: {} },
          default: 'stable',
          ...(shadow ? { shadow: { variant: 'cand', percent: 100 } } : {}),
        },
      },
    })
    const shadowed = async (v) => {
      if (v.isShadow) busy(SHADOW_MS)
      return 1
    }
    const samples = []
    for (let i = 0; i < SHADOW_CALLS; i++) {
      const start = process.hrtime.bigint()
      const r = await f.call('bot', { user_id: `user-${i}` }, shadowed)
      samples.push(Number(process.hrtime.bigint() - start) / 1000)
      sink += r.value
      await new Promise((resolve) => setTimeout(resolve, SHADOW_MS * 1.6))
    }
    found[label] = latencyStats(samples.slice(2))
  }
  console.log(`RESULT ${JSON.stringify({ name: 'node_call_served_latency', shadow_ms: SHADOW_MS, calls: SHADOW_CALLS - 2, ...found })}`)
}

await scenario('node_call_overhead', 'no-timeout')
await scenario('node_call_overhead_timeout', 'timeout')
await servedLatency()
if (sink === 0) console.log('unreachable')
