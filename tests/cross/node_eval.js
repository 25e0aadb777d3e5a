'use strict'
// The Node side of the cross-language test (tests/cross/test_cross.py).
//
//   node tests/cross/node_eval.js MANIFEST.json
//
// The manifest lists `{ "document": PATH, "requests": PATH, "timeless": [FLAG, ...] }` in order.
// Each requests file holds JSON lines `{"flag", "context", "at"}` (the input of
// `flagrail eval-batch`); for each line this prints one JSON line
// `{"variant", "reason", "rule_id", "bucket"}` in the same order, all documents concatenated.
//
// Lines are read with a bigint-aware JSON reader: integer units beyond 2^53 must reach the
// addon exact, as they reach Rust and Python. Each request is evaluated with `at` (the path
// simulations use). For flags whose decision cannot depend on the clock (`timeless`: no ramp),
// the request is also evaluated without `at`, through the fast path real traffic takes, and the
// two must agree.

const fs = require('node:fs')
const path = require('node:path')

const { Flags } = require(path.join(__dirname, '..', '..', 'bindings-node'))
const { parseJson } = require(path.join(__dirname, '..', '..', 'bindings-node', '__test__', 'json.js'))

const manifest = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const out = []
let failures = 0

for (const entry of manifest) {
  const flags = Flags.fromFile(entry.document, { reload: false })
  const timeless = new Set(entry.timeless)
  const lines = fs.readFileSync(entry.requests, 'utf8').split('\n')
  for (const line of lines) {
    if (line.length === 0) continue
    const request = parseJson(line)
    const v = flags.variant(request.flag, request.context, null, { at: request.at })
    const result = { variant: v.id, reason: v.reason, rule_id: v.ruleId, bucket: v.bucket }
    if (timeless.has(request.flag)) {
      // And `variants` without `at`: its fast path (one native call for the key list, see
      // bindings-node/src/raw_many.rs), with an unknown key beside the flag.
      const planned = flags.variants(request.context, [request.flag, 'no-such-flag'])[request.flag]
      if (planned.id !== v.id || planned.reason !== v.reason || planned.ruleId !== v.ruleId || planned.bucket !== v.bucket) {
        failures++
        if (failures <= 5) process.stderr.write(`variants() without at differs from variant() for ${line}\n`)
      }
      const fast = flags.variant(request.flag, request.context)
      if (fast.id !== v.id || fast.reason !== v.reason || fast.ruleId !== v.ruleId || fast.bucket !== v.bucket) {
        failures++
        if (failures <= 5) {
          process.stderr.write(
            `fast path differs from the at path for ${line}: ${JSON.stringify({ variant: fast.id, reason: fast.reason, rule_id: fast.ruleId, bucket: fast.bucket })} vs ${JSON.stringify(result)}\n`,
          )
        }
      }
    }
    // `variants` (the context read once for several flags) must give the same answer.
    const many = flags.variants(request.context, [request.flag], { at: request.at })[request.flag]
    if (many.id !== v.id || many.reason !== v.reason || many.ruleId !== v.ruleId || many.bucket !== v.bucket) {
      failures++
      if (failures <= 5) process.stderr.write(`variants() differs from variant() for ${line}\n`)
    }
    out.push(JSON.stringify(result))
  }
}

process.stdout.write(`${out.join('\n')}\n`)
if (failures > 0) {
  process.stderr.write(`${failures} fast-path results differ from the at path\n`)
  process.exitCode = 1
}
