// The Node half of the runtime demo (run by examples/demo_runtime.py): the same document, the
// same fake provider and the same traffic through `flags.call`; prints the trip and the table,
// and writes the decisions of the first users today and tomorrow for the comparison.
//
//   node examples/demo_runtime.mjs DOCUMENT NOW LATER OUT.json USERS
import { readFileSync, writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { Flags, Output, Reject, bucket } = require('../bindings-node')

const [documentPath, now, later, outPath, comparedText] = process.argv.slice(2)
const compared = Number(comparedText)
const FLAG = 'support-assistant'
const provider = JSON.parse(readFileSync(new URL('./fake_provider.json', import.meta.url), 'utf8'))
const flags = Flags.fromFile(documentPath, { reload: false })

const isEdgeCase = (user) => bucket(provider.edge_case.salt, user, 100) < provider.edge_case.percent

async function fakeModel(variant, user, signal) {
  const spec = provider.variants[variant.id]
  const [low, high] = spec.latency_ms
  await sleep(low + bucket(`latency/${variant.id}`, user, high - low + 1), undefined, { signal })
  const [outLow, outHigh] = spec.output_tokens
  const wrong = provider.edge_case.wrong.includes(variant.id) && isEdgeCase(user)
  return {
    text: `[${variant.payload.model}] Here is how your refund works …`,
    grounded: !wrong,
    inputTokens: spec.input_tokens,
    outputTokens: outLow + bucket(`tokens/${variant.id}`, user, outHigh - outLow + 1),
  }
}

const contextOf = (i) => ({ user_id: `user-${i}`, plan: 'pro', segment: i % 3 === 0 ? 'eu' : 'us' })

function decisions() {
  const rows = []
  for (let i = 0; i < compared; i++) {
    for (const at of [now, later]) {
      const v = flags.variant(FLAG, contextOf(i), null, { at })
      rows.push([`user-${i}`, at, v.id, v.reason])
    }
  }
  return rows
}

const before = decisions()
let requestNo = 0
flags.onEvent((event) => {
  if (event.type === 'guardrail_trip') {
    console.log(
      `request #${requestNo}, ${event.time}: guardrail ${event.guardrail} tripped on ${event.variant} — ` +
        `${(event.observed * 100).toFixed(1)} % wrong over ${event.samples} calls → ${event.action} the ramp`,
    )
  }
})

const handle = async (i) => {
  const user = contextOf(i)
  const result = await flags.call(FLAG, user, async (variant, { signal }) => {
    const reply = await fakeModel(variant, user.user_id, signal)
    if (!reply.grounded) throw new Reject('the answer contradicts the refund policy')
    return new Output(reply.text, { inputTokens: reply.inputTokens, outputTokens: reply.outputTokens })
  })
  requestNo++
  return result
}

const { users, concurrency } = provider.traffic
for (let start = 0; start < users; start += concurrency) {
  const batch = []
  for (let i = start; i < Math.min(start + concurrency, users); i++) batch.push(handle(i))
  await Promise.all(batch)
}

const metrics = flags.metrics()[FLAG]
for (const id of ['stable', 'candidate']) {
  const m = metrics[id]
  console.log(
    `${id.padEnd(10)} requests ${String(m.requests).padStart(5)}  error rate ${(m.error_rate * 100).toFixed(2).padStart(5)} %  ` +
      `p95 ${m.latency_ms.p95.toFixed(1)} ms  cost $${m.cost.toFixed(2)}`,
  )
}
for (const g of flags.status().guardrails) console.log(`status(): guardrail ${g.guardrail} ${g.state} since ${g.since}`)
writeFileSync(outPath, JSON.stringify({ before, after: decisions() }))
