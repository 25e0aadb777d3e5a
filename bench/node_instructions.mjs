// Instructions per evaluation of the Node scenario, for callgrind (docs/benchmarks.md): the
// benchmark's loop (object literal, `flags.variant`, read `.id`), three warm-up passes, then
// PASSES passes over N users. The difference between runs with PASSES=2 and PASSES=1, divided
// by N, is one iteration with start-up cancelled out:
//
//   for p in 1 2; do PASSES=$p N=20000 valgrind --tool=callgrind \
//     --callgrind-out-file=/tmp/node.$p.out node --single-threaded bench/node_instructions.mjs; done
//
// `--single-threaded`: V8's background compiler and GC otherwise make counts unrepeatable. The
// whole-iteration count still moves by about ±100 between runs (JIT decisions); the native part
// (the addon's functions, Node-API, V8's string copy) does not.

import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Flags } = require('../bindings-node')
const N = Number(process.env.N ?? 20_000)
const PASSES = Number(process.env.PASSES ?? 1)

// The scenario of bench/node_eval.mjs.
const flags = Flags.fromObject({
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
})
const ids = new Array(N)
const segments = new Array(N)
for (let i = 0; i < N; i++) {
  ids[i] = `user-${i}`
  segments[i] = i % 10 === 0 ? 'internal' : 'external'
}

function pass() {
  let sink = 0
  for (let i = 0; i < N; i++) {
    const v = flags.variant('chat-model', { user_id: ids[i], segment: segments[i] })
    sink += v.id.length
  }
  return sink
}

for (let w = 0; w < 3; w++) pass()
for (let p = 0; p < PASSES; p++) pass()
