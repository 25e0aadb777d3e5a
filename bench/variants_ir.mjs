// Three flags for one request, as instructions per loop iteration (docs/benchmarks.md, "Three
// flags for one request"): the loops of bench/node_eval.mjs without timing, for
// `valgrind --tool=callgrind` on a machine too loaded for wall-clock numbers.
//
//   MODE=one|many|separate P=1 valgrind --tool=callgrind node --single-threaded bench/variants_ir.mjs
//   MODE=one|many|separate P=2 valgrind --tool=callgrind node --single-threaded bench/variants_ir.mjs
//
// Instructions per iteration = (Ir(P=2) - Ir(P=1)) / N, after 3 warm-up passes (V8's tiers).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Flags } = require('../bindings-node/index.js')

const N = Number(process.env.N ?? 20000)
const P = Number(process.env.P ?? 1)
const MODE = process.env.MODE ?? 'many'

const same = {
  bucket_by: 'user_id',
  variants: { control: { model: 'model-a' }, v2: { model: 'model-b' }, v3: { model: 'model-c' } },
  default: 'control',
  rules: [
    { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: 'v3' },
    { id: 'split', split: [{ variant: 'control', percent: 90 }, { variant: 'v2', percent: 5 }, { variant: 'v3', percent: 5 }] },
  ],
}
const three = Flags.fromObject({ revision: 'bench-3', flags: { 'chat-model': same, prompt: same, temperature: same } })
const ids = []
const segments = []
for (let i = 0; i < N; i++) {
  ids.push(`user-${i}`)
  segments.push(i % 10 === 0 ? 'internal' : 'external')
}
const keys = ['chat-model', 'prompt', 'temperature']
let sink = 0
const loops = {
  one() {
    for (let i = 0; i < N; i++) sink += three.variant('chat-model', { user_id: ids[i], segment: segments[i] }).id.length
  },
  separate() {
    for (let i = 0; i < N; i++) {
      const ctx = { user_id: ids[i], segment: segments[i] }
      sink += three.variant('chat-model', ctx).id.length + three.variant('prompt', ctx).id.length + three.variant('temperature', ctx).id.length
    }
  },
  many() {
    for (let i = 0; i < N; i++) {
      const r = three.variants({ user_id: ids[i], segment: segments[i] }, keys)
      sink += r['chat-model'].id.length + r.prompt.id.length + r.temperature.id.length
    }
  },
}
const loop = loops[MODE]
for (let w = 0; w < 3; w++) loop()
for (let p = 0; p < P; p++) loop()
if (sink < 0) console.log(sink)
