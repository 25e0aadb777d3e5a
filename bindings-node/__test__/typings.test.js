'use strict'
// index.d.ts is hand-written: this keeps it honest. Every declared export must exist in the
// CommonJS and ESM entries with the declared kind, every real export must be declared, and the
// members declared on each class must match the real classes (public members only; `_`-prefixed
// ones are private). Also checks that the package resolves by name both ways.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { test } = require('node:test')

const flagrail = require('..')

const DTS = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8')

/** `export declare class|function|const NAME` → kind by name. */
function declaredExports(text) {
  const out = new Map()
  for (const m of text.matchAll(/^export declare (class|function|const) (\w+)/gm)) out.set(m[2], m[1])
  return out
}

/** The members declared in the body of `export declare class NAME { ... }`. */
function declaredMembers(text, name) {
  const found = new RegExp(`^export declare class ${name}\\b`, 'm').exec(text)
  assert.ok(found !== null, `class ${name} is declared`)
  const start = found.index
  // The body opens at the end of the header line (generic defaults may hold braces too).
  const open = text.indexOf('{\n', start)
  let depth = 0
  let end = open
  for (; end < text.length; end++) {
    if (text[end] === '{') depth++
    if (text[end] === '}' && --depth === 0) break
  }
  const body = text.slice(open + 1, end)
  const members = { instance: new Map(), static: new Map() }
  // Members sit at two spaces of indentation; deeper lines are inside member types.
  for (const m of body.matchAll(/^ {2}(static )?(readonly )?(private )?(get |set )?(\w+)(\??)(\(|<|:)/gm)) {
    if (m[3] || m[5] === 'constructor') continue
    const kind = m[7] === ':' ? 'property' : 'method'
    members[m[1] ? 'static' : 'instance'].set(m[5], kind)
  }
  return members
}

/** The members of `export interface NAME { ... }` (two-space indented `name:` / `name?:`). */
function interfaceMembers(text, name) {
  const found = new RegExp(`^export interface ${name}\\b[^{]*\\{\\n`, 'm').exec(text)
  assert.ok(found !== null, `interface ${name} is declared`)
  const body = text.slice(found.index + found[0].length, text.indexOf('\n}\n', found.index))
  return [...body.matchAll(/^ {2}(?:readonly )?(\w+)\??(?:\(|:)/gm)].map((m) => m[1]).sort()
}

/** The string literals of `export type NAME = 'a' | 'b' | ...`. */
function unionMembers(text, name) {
  const found = new RegExp(`^export type ${name} =([^]*?)\\n(?!\\s+\\|)`, 'm').exec(text)
  assert.ok(found !== null, `type ${name} is declared`)
  return [...found[1].matchAll(/'([^']*)'/g)].map((m) => m[1])
}

function runtimeKind(value) {
  if (typeof value !== 'function') return 'const'
  return /^class\b/.test(Function.prototype.toString.call(value)) ? 'class' : 'function'
}

test('every declared export exists with its kind, and every export is declared', async () => {
  const declared = declaredExports(DTS)
  assert.ok(declared.size >= 6, 'the parser finds the declarations')
  const esm = await import('../index.mjs')
  const entries = [
    ['require', flagrail],
    ['import', Object.fromEntries(Object.entries(esm).filter(([k]) => k !== 'default'))],
  ]
  for (const [how, exports] of entries) {
    const actual = new Map(Object.keys(exports).map((k) => [k, runtimeKind(exports[k])]))
    assert.deepEqual([...actual.keys()].sort(), [...declared.keys()].sort(), `${how}: exports match index.d.ts`)
    for (const [name, kind] of declared) assert.equal(actual.get(name), kind, `${how}: ${name} is a ${kind}`)
  }
  assert.equal(esm.default, flagrail, 'the ESM default export is the CommonJS module')
  assert.equal(esm.Flags, flagrail.Flags, 'one class, whichever way it is loaded')
})

test('declared class members match the real classes', () => {
  const { Flags, Flag, Variant, FlagrailError, Reject, Output } = flagrail
  const flags = Flags.fromObject({ flags: { f: { variants: { a: {} }, default: 'a' } } })
  const samples = {
    Flags: flags,
    Flag: flags.flag('f'),
    Variant: flags.variant('f', {}),
    FlagrailError: new FlagrailError('INVALID_ARGUMENT', 'x'),
    Reject: new Reject('not good enough'),
    Output: new Output('text', { inputTokens: 1 }),
  }
  const classes = { Flags, Flag, Variant, FlagrailError, Reject, Output }
  for (const [name, cls] of Object.entries(classes)) {
    const declared = declaredMembers(DTS, name)
    const instance = samples[name]
    for (const [member, kind] of declared.instance) {
      if (kind === 'method') assert.equal(typeof instance[member], 'function', `${name}#${member} is a method`)
      else assert.ok(member in instance, `${name}#${member} exists`)
    }
    for (const [member] of declared.static) assert.equal(typeof cls[member], 'function', `${name}.${member} exists`)
    // The other way: public methods and own fields must be declared.
    const proto = Object.getOwnPropertyNames(cls.prototype).filter((k) => k !== 'constructor' && !k.startsWith('_'))
    const own = Object.keys(instance).filter((k) => !k.startsWith('_') && !(instance instanceof Error && k === 'stack'))
    for (const member of [...proto, ...own]) assert.ok(declared.instance.has(member), `${name}#${member} is declared in index.d.ts`)
    const statics = Object.getOwnPropertyNames(cls).filter((k) => !['length', 'name', 'prototype'].includes(k) && !k.startsWith('_'))
    for (const member of statics) assert.ok(declared.static.has(member), `${name}.${member} is declared in index.d.ts`)
  }
})

test('the member parser sees a mismatch (so the checks above can fail)', () => {
  const broken = DTS.replace('  reloadIfChanged(): boolean', '  reloadIfChangedTypo(): boolean')
  assert.ok(declaredMembers(broken, 'Flags').instance.has('reloadIfChangedTypo'))
  assert.ok(!declaredMembers(broken, 'Flags').instance.has('reloadIfChanged'))
  const missing = DTS.replace('export declare function bucket', 'declare function bucket')
  assert.ok(!declaredExports(missing).has('bucket'))
})

test('every export in index.d.ts carries JSDoc', () => {
  for (const m of DTS.matchAll(/^export declare (?:class|function|const) (\w+)/gm)) {
    const before = DTS.slice(0, m.index).trimEnd()
    assert.ok(before.endsWith('*/'), `${m[1]} has a JSDoc comment`)
  }
})

test('the package resolves by name with require and import', async () => {
  // Self-reference through package.json "exports".
  assert.equal(require('flagrail'), flagrail)
  const esm = await import('flagrail')
  assert.equal(esm.Flags, flagrail.Flags)
  const pkg = require('flagrail/package.json')
  assert.equal(pkg.name, 'flagrail')
  assert.equal(pkg.types, 'index.d.ts')
})

test('the unions of reasons and kill sources list exactly what the core decodes', () => {
  const flags = flagrail.Flags.fromObject({ flags: { f: { variants: { a: {} }, default: 'a' } } })
  // The tables the addon sends (private, but this test is about the addon's contract).
  assert.deepEqual(unionMembers(DTS, 'Reason').sort(), [...flags._tables.reasons].sort())
  assert.deepEqual(unionMembers(DTS, 'KillSource').sort(), [...flags._tables.killSources].sort())
})

test('declared interfaces match the objects the API returns', async () => {
  const { Flags } = flagrail
  const flags = Flags.fromObject({
    flags: {
      f: {
        bucket_by: 'user_id',
        variants: { a: { model: 'a' }, b: { model: 'b' } },
        default: 'a',
        shadow: { variant: 'b', percent: 100 },
        sticky: { ttl: '1h' },
        budgets: [{ id: 'hourly', max_requests: 100, window: '1h', action: { serve: 'b' } }],
      },
    },
  })
  let options
  const result = await flags.call('f', { user_id: 'u1' }, async (variant, o) => {
    if (!o.shadow) options = o
    return 'ok'
  })
  const status = flags.status()
  const pairs = [
    ['CallResult', result],
    ['Attempt', result.attempts[0]],
    ['Explanation', flags.explain('f', { user_id: 'u1', conversation_id: 'c' })],
    ['Status', status],
    ['StickyStoreStatus', status.sticky_store],
    ['LocalKill', (flags.kill('f', { reason: 'r' }), flags.status().local_kills.flags.f)],
    ['ExposureStatus', Flags.fromObject({ flags: { f: { variants: { a: {} }, default: 'a' } } }, { exposures: true }).status().exposures],
  ]
  for (const [name, object] of pairs) assert.deepEqual(Object.keys(object).sort(), interfaceMembers(DTS, name), name)
  // CallOptions: own fields plus the lazily made `signal` getter.
  const declared = interfaceMembers(DTS, 'CallOptions')
  const actual = [...Object.keys(options).filter((k) => !k.startsWith('_')), 'signal'].sort()
  assert.deepEqual(actual, declared, 'CallOptions')
  // A budget's state: every field it has is declared.
  const budgetFields = interfaceMembers(DTS, 'BudgetState')
  for (const key of Object.keys(status.budgets[0])) assert.ok(budgetFields.includes(key), `BudgetState.${key} is declared`)
  assert.deepEqual(interfaceMembers(DTS, 'PinStore'), ['delete', 'get', 'set'])
})
