'use strict'
// A JSON reader that keeps integers beyond 2^53 exact, as bigint (JSON.parse would round them:
// the vectors hold i64::MIN and i64::MAX units). Everything else reads as JSON.parse reads it.

function parseJson(text) {
  let i = 0
  const fail = (what) => {
    throw new SyntaxError(`JSON: ${what} at offset ${i}`)
  }
  const space = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\r' || text[i] === '\t')) i++
  }
  const value = () => {
    space()
    const c = text[i]
    if (c === '{') {
      i++
      const out = {}
      space()
      if (text[i] === '}') {
        i++
        return out
      }
      for (;;) {
        space()
        if (text[i] !== '"') fail('expected a key')
        const key = string()
        space()
        if (text[i++] !== ':') fail('expected ":"')
        out[key] = value()
        space()
        if (text[i] === ',') i++
        else if (text[i] === '}') {
          i++
          return out
        } else fail('expected "," or "}"')
      }
    }
    if (c === '[') {
      i++
      const out = []
      space()
      if (text[i] === ']') {
        i++
        return out
      }
      for (;;) {
        out.push(value())
        space()
        if (text[i] === ',') i++
        else if (text[i] === ']') {
          i++
          return out
        } else fail('expected "," or "]"')
      }
    }
    if (c === '"') return string()
    if (text.startsWith('true', i)) return (i += 4), true
    if (text.startsWith('false', i)) return (i += 5), false
    if (text.startsWith('null', i)) return (i += 4), null
    return number()
  }
  const string = () => {
    const start = i
    i++
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1
    if (i >= text.length) fail('unterminated string')
    i++
    return JSON.parse(text.slice(start, i))
  }
  const number = () => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64))
    if (match === null) fail('unexpected character')
    i += match[0].length
    const n = Number(match[0])
    if (match[2] === undefined && match[3] === undefined && !Number.isSafeInteger(n)) return BigInt(match[0])
    return n
  }
  const out = value()
  space()
  if (i !== text.length) fail('trailing characters')
  return out
}

module.exports = { parseJson }

/** JSON.stringify that writes bigints as JSON integers (the inverse of parseJson). */
function stringifyJson(value) {
  if (typeof value === 'bigint') return value.toString()
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : stringifyJson(v))).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const parts = []
    for (const [k, v] of Object.entries(value)) if (v !== undefined) parts.push(`${JSON.stringify(k)}:${stringifyJson(v)}`)
    return `{${parts.join(',')}}`
  }
  return JSON.stringify(value)
}

module.exports.stringifyJson = stringifyJson
