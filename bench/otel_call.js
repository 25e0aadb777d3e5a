'use strict'
// The cost of the OpenTelemetry spans on flags.call, as instructions per call (Node):
//   FLAGRAIL_OTEL=0 node bench/otel_call.js N      the plain chain (as without @opentelemetry/api)
//   node bench/otel_call.js N                      API installed, no SDK registered
//   node bench/otel_call.js N sdk                  SDK recording, spans dropped by a no-op exporter
// Run each under `valgrind --tool=callgrind` for N and 2N calls: (Ir(2N) - Ir(N)) / N.
const path = require('node:path')
const node = path.join(__dirname, '..', 'bindings-node')
const { Flags } = require(node)

const calls = Number(process.argv[2])
if (process.argv[3] === 'sdk') {
  const api = require(require.resolve('@opentelemetry/api', { paths: [node] }))
  const { BasicTracerProvider, SimpleSpanProcessor } = require(require.resolve('@opentelemetry/sdk-trace-base', { paths: [node] }))
  const drop = { export: (spans, done) => done({ code: 0 }), shutdown: async () => {} }
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(drop)] }))
}
const flags = Flags.fromObject({ revision: 'r1', flags: { bot: { variants: { a: { model: 'm', temperature: 0.2 } }, default: 'a' } } })
const user = { user_id: 'u-1' }
const fn = async () => 'ok'

async function main() {
  await flags.call('bot', user, fn) // warm: the first call loads otel.js
  for (let i = 0; i < calls; i++) await flags.call('bot', user, fn)
}
main()
