// The evaluation benchmark of docs/benchmarks.md, for Node: ns per `flags.variant('chat-model', {...})`
// including building the context object, peak RSS against an empty-loop baseline, and memory
// over 10 million evaluations.
//
//   make build-node-release && node bench/node_eval.mjs
//   N=200000 REPS=7 MEM_EVALS=10000000 node bench/node_eval.mjs
//
// Prints one `RESULT {...}` line per result. Needs the release addon (`make build-node-release`;
// `make bench` does it): the debug build is several times slower.

import { createRequire } from 'node:module'

const N = Number(process.env.N ?? 200_000)
const REPS = Number(process.env.REPS ?? 7)
const MEM_EVALS = Number(process.env.MEM_EVALS ?? 10_000_000)
if (!Number.isInteger(N) || N < 1000 || !Number.isInteger(REPS) || REPS < 5) {
  console.error('N must be an integer >= 1000 and REPS an integer >= 5')
  process.exit(2)
}

// The scenario: chat-model, a rule `segment eq "internal"` -> v3, then 90/5/5 by user_id.
const DOCUMENT = {
  revision: 'bench-1',
  flags: {
    'chat-model': {
      bucket_by: 'user_id',
      variants: { control: { model: 'model-a' }, v2: { model: 'model-b' }, v3: { model: 'model-c' } },
      default: 'control',
      rules: [
        { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: 'v3' },
        {
          id: 'split',
          split: [
            { variant: 'control', percent: 90 },
            { variant: 'v2', percent: 5 },
            { variant: 'v3', percent: 5 },
          ],
        },
      ],
    },
  },
}

const ids = new Array(N)
const segments = new Array(N)
for (let i = 0; i < N; i++) {
  ids[i] = `user-${i}`
  segments[i] = i % 10 === 0 ? 'internal' : 'external'
}

const peakRssMb = () => process.resourceUsage().maxRSS / 1024
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const round = (x, digits = 1) => Number(x.toFixed(digits))
const result = (fields) => console.log(`RESULT ${JSON.stringify(fields)}`)

// `wall` (default) or `cpu`: the process's CPU time (user + system), for a machine so loaded
// that wall time mostly measures the wait for a core.
const CLOCK = process.env.BENCH_CLOCK ?? 'wall'
if (CLOCK !== 'wall' && CLOCK !== 'cpu') throw new Error('BENCH_CLOCK must be wall or cpu')
const nowNs = () => {
  if (CLOCK === 'wall') return Number(process.hrtime.bigint())
  const { user, system } = process.cpuUsage()
  return (user + system) * 1000
}

/** Times `pass` REPS times after one warm-up; returns ns per evaluation of each rep. */
function timed(pass) {
  pass()
  const reps = []
  for (let r = 0; r < REPS; r++) {
    const start = nowNs()
    pass()
    reps.push((nowNs() - start) / N)
  }
  return reps
}

let sink = 0

// The empty-loop baseline, in this same process before flagrail is loaded: build the context,
// read a field. Its peak RSS is the floor the evaluation run is compared with (peak RSS only
// grows, so the difference is what loading and evaluating added).
const baselineReps = timed(() => {
  for (let i = 0; i < N; i++) {
    const ctx = { user_id: ids[i], segment: segments[i] }
    sink += ctx.segment.length
  }
})
const baseline = { ns_per_eval: round(median(baselineReps)), peak_rss_mb: round(peakRssMb()) }
result({ name: 'node_empty_loop', ns_per_eval: baseline.ns_per_eval, reps: baselineReps.map((x) => round(x)), peak_rss_mb: baseline.peak_rss_mb, n: N })

const require = createRequire(import.meta.url)
const { Flags } = require('../bindings-node')
const flags = Flags.fromObject(DOCUMENT)

// Correctness pass: internal users get v3 by the rule; the others split 90/5/5 within 1 point.
const counts = { control: 0, v2: 0, v3: 0 }
let externals = 0
for (let i = 0; i < N; i++) {
  const v = flags.variant('chat-model', { user_id: ids[i], segment: segments[i] })
  if (segments[i] === 'internal') {
    if (v.id !== 'v3' || v.reason !== 'TARGETING_MATCH') throw new Error(`internal user ${ids[i]} got ${v.id} (${v.reason})`)
  } else {
    if (v.reason !== 'SPLIT') throw new Error(`external user ${ids[i]} got reason ${v.reason}`)
    counts[v.id]++
    externals++
  }
}
const shares = Object.fromEntries(Object.entries(counts).map(([k, c]) => [k, (100 * c) / externals]))
for (const [variant, want] of [['control', 90], ['v2', 5], ['v3', 5]]) {
  if (Math.abs(shares[variant] - want) > 1) throw new Error(`split off: ${JSON.stringify(shares)}`)
}

const reps = timed(() => {
  for (let i = 0; i < N; i++) {
    const v = flags.variant('chat-model', { user_id: ids[i], segment: segments[i] })
    sink += v.id.length
  }
})
const peak = peakRssMb()
result({
  name: 'node_variant',
  clock: CLOCK,
  ns_per_eval: round(median(reps)),
  reps: reps.map((x) => round(x)),
  peak_rss_mb: round(peak),
  baseline_peak_rss_mb: baseline.peak_rss_mb,
  rss_over_baseline_mb: round(peak - baseline.peak_rss_mb),
  baseline_ns_per_eval: baseline.ns_per_eval,
  n: N,
  split_percent: Object.fromEntries(Object.entries(shares).map(([k, v]) => [k, round(v, 2)])),
})

// Three flags for one request (docs/benchmarks.md, Targets: `variants` within 1.5x one `variant`): the
// scenario's flag plus two more of the same shape (other keys, so other buckets), read with one
// `variants(context, keys)` call, against one `variant` and three `variant` calls on the same
// handle, interleaved pass by pass.
{
  const three = Flags.fromObject({
    revision: 'bench-3',
    flags: { 'chat-model': DOCUMENT.flags['chat-model'], 'prompt': DOCUMENT.flags['chat-model'], 'temperature': DOCUMENT.flags['chat-model'] },
  })
  const keys = ['chat-model', 'prompt', 'temperature']
  const one = () => {
    for (let i = 0; i < N; i++) sink += three.variant('chat-model', { user_id: ids[i], segment: segments[i] }).id.length
  }
  const separate = () => {
    for (let i = 0; i < N; i++) {
      const ctx = { user_id: ids[i], segment: segments[i] }
      sink += three.variant('chat-model', ctx).id.length + three.variant('prompt', ctx).id.length + three.variant('temperature', ctx).id.length
    }
  }
  const many = () => {
    for (let i = 0; i < N; i++) {
      const r = three.variants({ user_id: ids[i], segment: segments[i] }, keys)
      sink += r['chat-model'].id.length + r.prompt.id.length + r.temperature.id.length
    }
  }
  for (const pass of [one, separate, many]) pass()
  const reps = { one: [], separate: [], many: [] }
  for (let r = 0; r < REPS; r++) {
    for (const [name, pass] of [['one', one], ['separate', separate], ['many', many]]) {
      const start = nowNs()
      pass()
      reps[name].push((nowNs() - start) / N)
    }
  }
  const m = Object.fromEntries(Object.entries(reps).map(([k, v]) => [k, median(v)]))
  result({
    name: 'node_variants_three',
    clock: CLOCK,
    ns_per_request: round(m.many),
    reps: reps.many.map((x) => round(x)),
    one_variant_ns: round(m.one),
    three_variant_calls_ns: round(m.separate),
    ratio_to_one_variant: round(m.many / m.one, 2),
    target_ratio: 1.5,
    n: N,
  })
}

// Memory flatness: RSS sampled every million evaluations; growth is measured from the second
// sample on (the first million warms up the heap and the allocator).
const samples = []
const chunk = 1_000_000
for (let done = 0; done < MEM_EVALS; ) {
  const stop = Math.min(MEM_EVALS, done + chunk)
  for (let k = done; k < stop; k++) {
    const i = k % N
    const v = flags.variant('chat-model', { user_id: ids[i], segment: segments[i] })
    sink += v.id.length
  }
  done = stop
  samples.push(process.memoryUsage().rss / 1048576)
}
const from = samples[Math.min(1, samples.length - 1)]
const to = samples[samples.length - 1]
const millions = Math.max(1, samples.length - 2)
result({
  name: 'node_memory_10m',
  evals: MEM_EVALS,
  rss_mb_samples: samples.map((x) => round(x)),
  growth_mb: round(to - from, 2),
  growth_kb_per_million_evals: round(((to - from) * 1024) / millions, 1),
  peak_rss_mb: round(peakRssMb()),
  flat: to - from < 5,
  sink: sink % 1000,
})
