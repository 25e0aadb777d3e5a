'use strict'
// The Node side of tests/cross/test_loader_verdicts.py.
//
//   node tests/cross/node_verdicts.js CASES.json
//
// CASES.json lists `{ "text": STRING, "object": VALUE | null }`. For each case this prints one
// JSON line `{"text": VERDICT, "object": VERDICT | null}`: the verdict of `Flags.fromJson(text)`
// and of `Flags.fromObject(object)`, where a verdict is `"accepted"` or the problems
// `[[path, code], ...]` sorted, or `["error", code, message]` for an error that is not
// INVALID_DOCUMENT.

const fs = require('node:fs')
const path = require('node:path')

const { Flags } = require(path.join(__dirname, '..', '..', 'bindings-node'))

function verdict(load) {
  try {
    load()
    return 'accepted'
  } catch (err) {
    if (err.code !== 'INVALID_DOCUMENT' || !Array.isArray(err.problems)) {
      return ['error', String(err.code), String(err.message).slice(0, 300)]
    }
    return err.problems.map((p) => [p.path, p.code]).sort()
  }
}

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
for (const c of cases) {
  const out = {
    text: verdict(() => Flags.fromJson(c.text)),
    object: c.object === null ? null : verdict(() => Flags.fromObject(c.object)),
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
