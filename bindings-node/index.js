'use strict'
// flagrail for Node: the public package over the private native addon (flagrail.node).
//
// Every decision is made by the Rust core; this file only marshals. Its shape comes from one
// number: a whole-context conversion at the napi boundary costs ~400 ns, over the 250 ns budget
// of one `flags.variant(...)`. So `variant()` reads just the attributes the flag uses (the core
// lists them per flag) from the caller's object, passes them positionally to a raw native
// callback, gets one packed number back (variant index, reason, rule index or kill source,
// bucket) and builds the Variant from per-document tables whose ids and payloads were parsed
// and frozen once. src/handle.rs documents the native half and the packing.

const path = require('node:path')

const ADDON = path.join(__dirname, 'flagrail.node')
let native
try {
  native = require(ADDON)
} catch (err) {
  err.message = `flagrail: cannot load the native addon ${ADDON} (build it with \`make build-node\` or \`npm run build\`): ${err.message}`
  throw err
}

// Native results that are not packed results (see src/handle.rs).
const STALE = -1 // the live document is not the one our tables describe: refresh and retry
const WIDE = -2 // does not fit the packed number: ask for the unpacked result
const LOW = 1048576 // 2^20: the packed bucket sits above this
const TARGET_SLOT = 16777216 // 2^24: a target is slot * 2^24 + flag index (see src/raw.rs)
// A reload landing during each of this many attempts is not a reload but a bug; even then,
// reading a flag does not throw.
const MAX_ATTEMPTS = 64

/** An error from flagrail: `.code` is the core's stable code, the same as in Python and Rust. */
class FlagrailError extends Error {
  constructor(code, message, problems) {
    super(message)
    this.name = 'FlagrailError'
    this.code = code
    this.problems = problems === undefined ? Object.freeze([]) : problems
  }
}

function failure(result) {
  const problems = result.problems.map((p) => Object.freeze({ path: p.path, code: p.code, message: p.message }))
  return new FlagrailError(result.code, result.message, Object.freeze(problems))
}

/** Errors thrown by the addon carry the core's code; rethrow them as FlagrailError. */
function rethrow(err) {
  if (err instanceof FlagrailError) throw err
  if (err !== null && typeof err === 'object' && typeof err.code === 'string' && /^[A-Z_]+$/.test(err.code)) {
    throw new FlagrailError(err.code, err.message)
  }
  throw err
}

function invalidArgument(message) {
  return new FlagrailError('INVALID_ARGUMENT', message)
}

function deepFreeze(value) {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze(value[key])
    Object.freeze(value)
  }
  return value
}

/** The payload of a result without a variant (an unknown flag), shared and frozen. */
const EMPTY_PAYLOAD = Object.freeze({})

/** The `at` option → Unix milliseconds; strings are parsed by the core, like documents. */
function toMillis(at) {
  if (at === undefined || at === null) return undefined
  if (at instanceof Date) {
    const ms = at.getTime()
    if (Number.isFinite(ms)) return ms
    throw invalidArgument('at: the Date is invalid')
  }
  if (typeof at === 'string') {
    const ms = native.parseTimestamp(at)
    if (ms !== null) return ms
    throw invalidArgument(`at: ${JSON.stringify(at)} is not an RFC 3339 timestamp such as "2026-11-21T09:00:00Z"`)
  }
  throw invalidArgument(`at must be a Date or an RFC 3339 string, not ${typeof at}`)
}

function optionsAt(options) {
  return options === undefined || options === null ? undefined : toMillis(options.at)
}

/** Reads one attribute; a throwing getter or proxy reads as missing (a read never throws). */
function readAttr(context, name) {
  try {
    return context[name]
  } catch {
    return undefined
  }
}

function readValues(context, names) {
  const values = new Array(names.length)
  const readable = context !== null && context !== undefined
  for (let i = 0; i < names.length; i++) values[i] = readable ? readAttr(context, names[i]) : undefined
  return values
}

/**
 * A function `(target, context) => packed` that reads the flag's attributes from the context
 * and evaluates: generated per attribute list so that each property read is a named load with
 * its own inline cache (a generic `context[names[i]]` loop is a keyed load, slower on the hot
 * path). Names are embedded with JSON.stringify, which yields a valid string literal for any
 * string. Under --disallow-code-generation-from-strings, and for more than four attributes, a
 * generic closure is used.
 */
function reader(names) {
  const generic = (target, context) => native.evalList(target, readValues(context, names))
  if (names.length > 4) return generic
  const reads = names.map((name) => `context[${JSON.stringify(name)}]`)
  const body = `return function (target, context) { return native.eval${names.length}(${['target', ...reads].join(', ')}) }`
  try {
    return new Function('native', body)(native)
  } catch {
    return generic
  }
}

/** The JS side of one document: ids and frozen payloads the packed results index into. */
class Tables {
  constructor(text, slot) {
    const data = JSON.parse(text)
    this.revision = data.revision
    this.reasons = data.reasons
    this.killSources = data.kill_sources
    this.byKey = new Map()
    data.flags.forEach((flag, index) => {
      this.byKey.set(flag.key, {
        key: flag.key,
        // What the native evaluators take: the handle's slot and the flag's index in one number.
        target: slot * TARGET_SLOT + index,
        attributes: flag.attributes,
        read: reader(flag.attributes),
        variantIds: flag.variants.map((v) => v.id),
        payloads: flag.variants.map((v) => deepFreeze(v.payload)),
        ruleIds: flag.rules,
        tables: this,
      })
    })
  }
}

/**
 * The variant of a flag that one context gets, and why. Returned by `variant()`, never built
 * by hand; safe to keep and to log (`JSON.stringify(v)` gives the same fields as Python's
 * `to_dict()`).
 */
class Variant {
  constructor(flag, id, payload, reason, ruleId, bucket, revision, killSource) {
    /** The flag key that was evaluated. */
    this.flag = flag
    /** The variant id; the caller's default (or null) for an unknown flag. */
    this.id = id
    /** The variant's payload, deeply frozen and shared by every result of this document. */
    this.payload = payload
    /** FLAG_NOT_FOUND, KILLED, GUARDRAIL, STICKY, BUDGET, TARGETING_MATCH, SPLIT or DEFAULT. */
    this.reason = reason
    /** The id of the rule that decided, or null. */
    this.ruleId = ruleId
    /** The unit's bucket when a split or ramp decided, or null. */
    this.bucket = bucket
    /** The revision of the document that made this decision. */
    this.revision = revision
    /** For KILLED: document, flag, local-all or local-flag; otherwise null. */
    this.killSource = killSource
  }

  /** A payload field, or `fallback` when the payload has no such field. */
  get(key, fallback) {
    const payload = this.payload
    if (payload !== null && typeof payload === 'object' && Object.prototype.hasOwnProperty.call(payload, key)) {
      return payload[key]
    }
    return fallback
  }

  /** The result as a plain object with the cross-language (snake_case) field names. */
  toJSON() {
    return {
      flag: this.flag,
      variant: this.id,
      payload: this.payload,
      reason: this.reason,
      rule_id: this.ruleId,
      bucket: this.bucket,
      revision: this.revision,
      kill_source: this.killSource,
    }
  }
}

function unpack(entry, packed, defaultVariant) {
  const bucket = Math.floor(packed / LOW)
  const low = packed - bucket * LOW
  const tables = entry.tables
  const reason = tables.reasons[low & 7]
  const variant = (low >> 3) & 255
  const rule = (low >> 11) & 255
  // A KILLED result has no rule: the rule field carries the kill source instead.
  const killed = reason === 'KILLED'
  return new Variant(
    entry.key,
    variant === 0 ? defaultVariant : entry.variantIds[variant - 1],
    variant === 0 ? EMPTY_PAYLOAD : entry.payloads[variant - 1],
    reason,
    rule === 0 || killed ? null : entry.ruleIds[rule - 1],
    low & 0x80000 ? bucket : null,
    tables.revision,
    killed && rule !== 0 ? tables.killSources[rule - 1] : null,
  )
}

function unpackWide(entry, wide, defaultVariant) {
  const [variant, reason, rule, bucket, kill] = wide
  const tables = entry.tables
  return new Variant(
    entry.key,
    variant < 0 ? defaultVariant : entry.variantIds[variant],
    variant < 0 ? EMPTY_PAYLOAD : entry.payloads[variant],
    tables.reasons[reason],
    rule < 0 ? null : entry.ruleIds[rule],
    bucket < 0 ? null : bucket,
    tables.revision,
    kill < 0 ? null : tables.killSources[kill - 1],
  )
}

function flagKey(flag) {
  if (typeof flag === 'string') return flag
  try {
    return String(flag)
  } catch {
    return ''
  }
}

function defaultId(defaultVariant) {
  if (defaultVariant === undefined || defaultVariant === null) return null
  return typeof defaultVariant === 'string' ? defaultVariant : flagKey(defaultVariant)
}

const CONSTRUCT = Symbol('flagrail.construct')
// The native state of a Flags lives in a per-thread slot table; the slot is freed when its
// Flags is collected.
const released = new FinalizationRegistry((slot) => native.release(slot))

/**
 * The live feature flags of a process. Create one per document at startup and share it.
 * A file source is reloaded in the background without keeping the event loop alive; an
 * invalid new document never replaces the live one. Reading a flag never throws.
 */
class Flags {
  constructor(slot, token) {
    if (token !== CONSTRUCT) {
      throw new TypeError('use Flags.fromFile, Flags.fromJson or Flags.fromObject')
    }
    this._slot = slot
    this._tables = new Tables(native.tables(slot), slot)
    released.register(this, slot)
  }

  static _from(result) {
    if (typeof result === 'number') return new Flags(result, CONSTRUCT)
    throw failure(result)
  }

  /**
   * Loads a flag document file and, unless `reload` is false, watches it: a changed file goes
   * live within one poll interval (`pollInterval` ms, 250 by default).
   */
  static fromFile(file, options) {
    const opts = options === undefined || options === null ? {} : options
    const reload = opts.reload === undefined ? true : Boolean(opts.reload)
    let poll
    if (opts.pollInterval !== undefined) {
      poll = opts.pollInterval
      if (!Number.isInteger(poll) || poll < 1 || poll > 0xffffffff) {
        throw invalidArgument('pollInterval must be a whole number of milliseconds >= 1')
      }
    }
    if (file instanceof URL) file = require('node:url').fileURLToPath(file)
    if (typeof file !== 'string') throw invalidArgument('path must be a string or a file: URL')
    return Flags._from(native.loadFile(file, reload, poll))
  }

  /** Parses and validates a flag document from JSON text (no reloading). */
  static fromJson(text) {
    if (text instanceof Uint8Array) text = Buffer.from(text.buffer, text.byteOffset, text.byteLength).toString('utf8')
    if (typeof text !== 'string') throw invalidArgument('fromJson takes the document as a string')
    return Flags._from(native.loadJson(text))
  }

  /** Validates a flag document given as a plain object (as `JSON.parse` returns it). */
  static fromObject(document) {
    let text
    try {
      text = JSON.stringify(document)
    } catch (err) {
      throw invalidArgument(`the document has no JSON form: ${err.message}`)
    }
    if (typeof text !== 'string') throw invalidArgument('fromObject takes the document as an object')
    return Flags._from(native.loadJson(text))
  }

  /**
   * The variant of `flag` for `context`. Never throws because of the flag, the context or the
   * document: an unknown flag gives `defaultVariant` with reason FLAG_NOT_FOUND, and a context
   * value of a type no condition can use is ignored for matching.
   */
  variant(flag, context, defaultVariant, options) {
    // Fast path: a known flag, now, a context object: one native call, no allocation but the
    // result.
    if (options === undefined && context !== null && context !== undefined) {
      const entry = this._tables.byKey.get(flag)
      if (entry !== undefined) {
        let packed = STALE
        try {
          packed = entry.read(entry.target, context)
        } catch {
          // A throwing getter: the careful path reads attribute by attribute.
        }
        if (packed >= 0) return unpack(entry, packed, null)
      }
    }
    return this._evaluate(flag, context, defaultId(defaultVariant), optionsAt(options))
  }

  /** The careful path: unknown flags, `at`, reloads, odd contexts. */
  _evaluate(flag, context, defaultVariant, at) {
    const key = flagKey(flag)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = this._tables.byKey.get(key)
      if (entry === undefined) {
        const packed = native.evalKey(this._slot, key, at)
        if (packed >= 0) return unpack({ key, tables: this._tables }, packed, defaultVariant)
      } else {
        const values = readValues(context, entry.attributes)
        const packed = native.evalList(entry.target, values, at)
        if (packed >= 0) return unpack(entry, packed, defaultVariant)
        if (packed === WIDE) {
          const wide = native.evalWide(this._slot, entry.target % TARGET_SLOT, values, at)
          if (wide !== null) return unpackWide(entry, wide, defaultVariant)
        }
      }
      this._refresh()
    }
    return new Variant(key, defaultVariant, EMPTY_PAYLOAD, 'FLAG_NOT_FOUND', null, null, this._tables.revision, null)
  }

  _refresh() {
    this._tables = new Tables(native.tables(this._slot), this._slot)
  }

  /** A handle bound to one flag key: `flags.flag('support-bot').variant(user)`. */
  flag(key) {
    return new Flag(this, key)
  }

  /**
   * How `flag` is decided for `context`, step by step, as a plain object: the result fields
   * (`flag`, `variant`, `payload`, `reason`, `rule_id`, `bucket`, `revision`, `kill_source`)
   * plus `steps`. Field names are the cross-language ones (the same as Python and the CLI).
   */
  explain(flag, context, options) {
    const at = optionsAt(options)
    const key = flagKey(flag)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = this._tables.byKey.get(key)
      const values = entry === undefined ? [] : readValues(context, entry.attributes)
      const index = entry === undefined ? -1 : entry.target % TARGET_SLOT
      const text = native.explain(this._slot, index, key, values, at)
      if (text !== null) return JSON.parse(text)
      this._refresh()
    }
    throw new FlagrailError('SOURCE_UNREACHABLE', 'the document changed during every attempt to explain')
  }

  /**
   * Source, live revision, its age, the last reload error (with `code` and every problem's
   * `path`), reload counters, whether the file is watched, and local kills.
   */
  status() {
    return JSON.parse(native.status(this._slot))
  }

  /** The revision of the live document. */
  get revision() {
    return this.status().revision
  }

  /**
   * Kills `flag` (every flag without one) in this process only: the next evaluation serves the
   * flag's kill variant with reason KILLED. The document is not changed.
   * `kill()`, `kill('support-bot')`, `kill('support-bot', { reason: 'fire drill' })`,
   * `kill({ reason })`.
   */
  kill(flag, options) {
    if (flag !== null && typeof flag === 'object' && options === undefined) {
      options = flag
      flag = undefined
    }
    const reason = options === undefined || options === null || options.reason == null ? undefined : String(options.reason)
    native.kill(this._slot, flag === undefined || flag === null ? undefined : flagKey(flag), reason)
  }

  /** Lifts the local kill of `flag` (every local kill without one). Document kills stay. */
  unkill(flag) {
    native.unkill(this._slot, flag === undefined || flag === null ? undefined : flagKey(flag))
  }

  /**
   * Checks a file source now and reloads it if it changed; returns whether a new document went
   * live (false for static sources). Throws when the new document is invalid (the live one
   * stays).
   */
  reloadIfChanged() {
    const result = native.reloadNow(this._slot)
    if (typeof result === 'boolean') return result
    throw failure(result)
  }

  /** Stops watching the file; the last document keeps serving. Idempotent. */
  close() {
    native.close(this._slot)
  }
}

/** One flag of a `Flags`, bound by key (see `Flags.flag`). The flag need not exist (yet). */
class Flag {
  constructor(flags, key) {
    this._flags = flags
    /** The flag key. */
    this.key = flagKey(key)
  }

  /** `flags.variant(key, context, defaultVariant, options)`. */
  variant(context, defaultVariant, options) {
    return this._flags.variant(this.key, context, defaultVariant, options)
  }

  /** `flags.explain(key, context, options)`. */
  explain(context, options) {
    return this._flags.explain(this.key, context, options)
  }
}

/**
 * The bucket in `0..total` that `unit` falls into under `salt` (bucketing v1,
 * docs/bucketing.md). `unit` is a string or an integer (a safe integer or a bigint; integers
 * hash as their decimal text). Throws INVALID_ARGUMENT for other units and totals outside
 * `1..2^32-1`.
 */
function bucket(salt, unit, total) {
  if (typeof salt !== 'string') throw invalidArgument('salt must be a string')
  if (typeof unit !== 'string' && typeof unit !== 'number' && typeof unit !== 'bigint') {
    throw invalidArgument('unit must be a string or an integer (number or bigint)')
  }
  if (total !== undefined && typeof total !== 'number') throw invalidArgument('total must be a number')
  try {
    return native.bucket(salt, unit, total)
  } catch (err) {
    rethrow(err)
  }
}

/** The bucketing algorithm version this build implements (docs/bucketing.md). */
const HASH_VERSION = native.HASH_VERSION

module.exports = { Flags, Flag, Variant, FlagrailError, bucket, HASH_VERSION }
