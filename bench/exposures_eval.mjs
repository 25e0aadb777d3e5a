// Instructions per `flags.variant` of the evaluation benchmark, with exposures off or on.
//
//     node --single-threaded bench/exposures_eval.mjs PASSES [on]
//
// Runs PASSES passes over 20,000 users of the scenario of bench/node_eval.mjs (build the
// context object, evaluate, read the id) after 3 warm-up passes. Run it under
// `valgrind --tool=callgrind` with 1 and 2 passes: (Ir(2) - Ir(1)) / 20,000 is the
// instructions per iteration (docs/benchmarks.md, "Exposures"). `on` builds the handle with
// `{ exposures: { windowMs: 3_600_000, sample: 1 } }` and an onEvent listener.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Flags } = require('../bindings-node/index.js')

const USERS = 20000
const DOCUMENT = {
  revision: 'bench-1',
  flags: {
    'chat-model': {
      bucket_by: 'user_id',
      variants: { control: { model: 'model-a' }, v2: { model: 'model-b' }, v3: { model: 'model-c' } },
      default: 'control',
      rules: [
        { id: 'internal', when: { attr: 'segment', op: 'eq', value: 'internal' }, serve: 'v3' },
        { id: 'split', split: [{ variant: 'control', percent: 90 }, { variant: 'v2', percent: 5 }, { variant: 'v3', percent: 5 }] },
      ],
    },
  },
}

const passes = Number(process.argv[2])
const on = process.argv[3] === 'on'
const flags = on ? Flags.fromObject(DOCUMENT, { exposures: { windowMs: 3_600_000, sample: 1 } }) : Flags.fromObject(DOCUMENT)
let seen = 0
if (on) flags.onEvent(() => { seen += 1 })
const ids = new Array(USERS)
const segments = new Array(USERS)
for (let i = 0; i < USERS; i++) {
  ids[i] = `user-${i}`
  segments[i] = i % 10 === 0 ? 'internal' : 'external'
}

let sink = 0
function onePass() {
  for (let i = 0; i < USERS; i++) sink += flags.variant('chat-model', { user_id: ids[i], segment: segments[i] }).id.length
}

for (let i = 0; i < 3; i++) onePass()
for (let i = 0; i < passes; i++) onePass()
if (sink === 0) console.log('unreachable', seen)
