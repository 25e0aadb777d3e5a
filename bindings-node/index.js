'use strict'
// flagrail for Node: the public package over the private native addon (flagrail.node).
//
// Every decision is made by the Rust core; this file only marshals. Its shape comes from one
// number: a whole-context conversion at the napi boundary costs ~400 ns, over the 250 ns budget
// of one `flags.variant(...)`. So `variant()` reads just the attributes the flag uses (the core
// lists them per flag) from the caller's object, passes them positionally to a raw native
// callback, gets one packed number back (variant index, reason, rule index or kill source,
// bucket or budget, shadow drawn) and builds the Variant from per-document tables whose ids and
// payloads were parsed and frozen once. src/handle.rs documents the native half and the
// packing. Sticky flags keep their pins in the core's in-memory store unless the app gives a
// pin store (`usePinStore`): then this file reads the pin, hands it to the core, and carries
// out the core's write or delete.
//
// `call` (the runtime around the model call) follows the same idea: the core plans the fallback
// chain and records every attempt; this file only runs the user's async function with its
// timeout and reports back, crossing into the addon twice for a call whose first attempt
// succeeds (src/runtime.rs). A call whose evaluation drew a shadow also runs the shadow
// attempt beside the chain, without waiting for it.

const path = require('node:path')
const { AsyncLocalStorage } = require('node:async_hooks')

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
const NOT_FORCED = -4 // evalForced: the live flag has no such variant (evaluate as usual)
const LOW = 1048576 // 2^20: the packed bucket sits above this
const SHADOW_BIT = 4294967296 // 2^32 above LOW (bit 52): a shadow was drawn
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

/** Pin effects in an unpacked result (src/handle.rs `pin_effect_code`). */
const PIN_WRITE = 2
const PIN_DELETE = 3
/** A pin that could not be read (a failing store, or a Promise in a synchronous read). */
const PIN_UNKNOWN = Symbol('flagrail.pinUnknown')

/** Whether `value` is a Promise or another thenable (a throwing `then` getter: not one). */
function isThenable(value) {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return false
  try {
    return typeof value.then === 'function'
  } catch {
    return false
  }
}

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

/** `keys` without repeats, in first-seen order (the array itself when it has none). */
function distinct(keys) {
  for (let i = 1; i < keys.length; i++) {
    if (keys.lastIndexOf(keys[i], i - 1) !== -1) return [...new Set(keys)]
  }
  return keys
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

/** Most run attributes `runStartRaw` takes (src/raw.rs, MAX_RUN_VALUES). */
const MAX_RUN_VALUES = 8

/**
 * A function `(target, context) => run` that reads a flag's run attributes from the context
 * and starts a `call` through the raw entry point (src/raw.rs, `runStartRaw`), generated like
 * `reader` and for the same reason; `null` (the careful path only) for more than
 * MAX_RUN_VALUES attributes or without code generation.
 */
function starter(names) {
  if (names.length > MAX_RUN_VALUES) return null
  const reads = names.map((name) => `context[${JSON.stringify(name)}]`)
  const body = `return function (target, context) { return native.runStartRaw(${['OUT_BUFFER', 'target', ...reads].join(', ')}) }`
  try {
    return new Function('native', 'OUT_BUFFER', body)(native, OUT_BUFFER)
  } catch {
    return null
  }
}

/** Most attribute values one plan passes to `evalPlan` (src/raw_many.rs, MAX_PLAN_VALUES). */
const MAX_PLAN_VALUES = 8
/** Most attributes of one flag a plan reads (src/handle.rs, `decide_plan`). */
const MAX_PLAN_FLAG_ATTRIBUTES = 16
/** Plans kept per document (distinct key lists); past this, `variants()` takes the careful path. */
const MAX_PLANS = 64

/**
 * The fast path of `variants(context, keys)` / `all(context)` for one key list of one document
 * (src/raw_many.rs). Built once: the flags' indices and where each flag's attributes sit among
 * the values, in a Float64Array that the native side also writes the packed results into; and
 * a generated function that reads the union of the flags' attributes from the context (one
 * named load each, as `reader` does for one flag), makes one native call and returns the
 * result as an object literal with the keys written in (one allocation of a fixed shape
 * instead of a keyed store per flag). `run` is null when the plan cannot take the fast path:
 * a sticky flag with a custom pin store, too many attributes, or no code generation.
 */
class Plan {
  constructor(tables, slot, source, keys) {
    this.tables = tables
    // The key list as given (contents compared on reuse: arrays are mutable) and deduplicated.
    // Copies: `distinct()` may return the caller's array itself, which the caller may change.
    this.keys = source === null ? null : source.slice()
    this.distinct = keys.slice()
    this.run = planRunner(tables, slot, this.distinct)
  }

  /** Whether `keys` holds exactly this plan's keys, in order. */
  sameKeys(keys) {
    const mine = this.keys
    if (mine === null || keys.length !== mine.length) return false
    for (let i = 0; i < mine.length; i++) if (keys[i] !== mine[i]) return false
    return true
  }
}

/** The `run(context)` function of a plan for the distinct `keys` of `tables`, or null. */
function planRunner(tables, slot, keys) {
  const entries = keys.map((key) => tables.byKey.get(key))
  const names = []
  const position = new Map()
  const spec = []
  let count = 0
  for (const entry of entries) {
    if (entry === undefined) continue
    if (!entry.direct || entry.readAttributes.length > MAX_PLAN_FLAG_ATTRIBUTES) return null
    spec.push(entry.index)
    // With exposures on, the unit and the segment label too (as `variant()` reads them).
    for (const name of entry.readAttributes) {
      if (!position.has(name)) {
        position.set(name, names.length)
        names.push(name)
      }
      spec.push(position.get(name))
    }
    count++
  }
  if (names.length > MAX_PLAN_VALUES) return null
  const plan = new Float64Array(3 + spec.length + count)
  plan[0] = slot
  plan[1] = count
  plan[2] = names.length
  plan.set(spec, 3)
  const out = 3 + spec.length
  const notFound = (key) =>
    new Variant(key, null, null, 'FLAG_NOT_FOUND', null, null, tables.revision, null, null, null, false, null)
  // Results with a WIDE number among them (more than 255 variants or rules): assembled
  // generically, with the unpacked forms the native side kept.
  const wide = () => {
    const numbers = native.takeWide() ?? []
    const results = {}
    let next = 0
    let taken = 0
    for (let i = 0; i < keys.length; i++) {
      const entry = entries[i]
      let variant
      if (entry === undefined) {
        variant = notFound(keys[i])
      } else {
        const packed = plan[out + next++]
        if (packed === WIDE) {
          variant = unpackWide(entry, numbers.slice(taken, taken + 8), null)
          taken += 8
        } else {
          variant = unpack(entry, packed, null)
        }
      }
      setResult(results, keys[i], variant)
    }
    return results
  }
  const fields = []
  let next = 0
  for (let i = 0; i < keys.length; i++) {
    // A quoted `"__proto__": v` would set the prototype; the computed form defines a property.
    const name = keys[i] === '__proto__' ? '["__proto__"]' : JSON.stringify(keys[i])
    fields.push(entries[i] === undefined ? `${name}: notFound(KEYS[${i}])` : `${name}: unpack(ENTRIES[${i}], PLAN[${out + next++}], null)`)
  }
  const reads = names.map((name) => `context[${JSON.stringify(name)}]`)
  const body = `return function (context) {
  let status
  try {
    status = native.evalPlan(${['BUFFER', ...reads].join(', ')})
  } catch {
    return undefined
  }
  if (status !== 0) return status > 0 ? wide() : undefined
  return { ${fields.join(', ')} }
}`
  try {
    return new Function('native', 'PLAN', 'BUFFER', 'ENTRIES', 'KEYS', 'unpack', 'notFound', 'wide', body)(
      native, plan, plan.buffer, entries, keys, unpack, notFound, wide,
    )
  } catch {
    return null
  }
}

/** `results[key] = variant`, defining `__proto__` as a property instead of setting the prototype. */
function setResult(results, key, variant) {
  if (key === '__proto__') Object.defineProperty(results, key, { value: variant, enumerable: true, writable: true, configurable: true })
  else results[key] = variant
}

/** The JS side of one document: ids and frozen payloads the packed results index into. */
class Tables {
  /**
   * `custom`: a custom pin store is in use, so sticky flags skip the native fast path.
   * `exposing`: the handle has exposures on, so reads also take the unit and the segment label
   * (the flag's run attributes, which start with its attributes).
   */
  constructor(text, slot, custom, exposing) {
    const data = JSON.parse(text)
    this.revision = data.revision
    this.reasons = data.reasons
    this.killSources = data.kill_sources
    // Every attribute any flag reads, each once (`variants()` reads a context into this order).
    this.attributes = data.attributes
    // Plans of `variants()` (the last one used, and all by first key) and of `all()`: see Plan.
    this.lastPlan = null
    this.plans = new Map()
    this.planCount = 0
    this.allPlan = null
    this.byKey = new Map()
    data.flags.forEach((flag, index) => {
      this.byKey.set(flag.key, {
        key: flag.key,
        // What the native evaluators take: the handle's slot and the flag's index in one number.
        target: slot * TARGET_SLOT + index,
        index,
        attributes: flag.attributes,
        // What a read takes from the context: `attributes`, plus the unit and the segment
        // label with exposures on.
        readAttributes: exposing ? flag.run_attributes : flag.attributes,
        // Where each of `readAttributes` sits in the document's `attributes` (the union
        // `variants()` reads once).
        readAttributeSlots: exposing ? flag.run_attribute_slots : flag.attribute_slots,
        // What a `call` or a tracker reads: the attributes plus the unit and the segment label.
        runAttributes: flag.run_attributes,
        start: starter(flag.run_attributes),
        read: reader(exposing ? flag.run_attributes : flag.attributes),
        variantIds: flag.variants.map((v) => v.id),
        payloads: flag.variants.map((v) => deepFreeze(v.payload)),
        hashes: flag.variants.map((v) => v.payload_hash),
        ruleIds: flag.rules,
        // Budget codes index these: the flag's budgets, then the document's.
        budgetIds: flag.budgets,
        shadowId: flag.shadow === null ? null : flag.variants[flag.shadow].id,
        // For a custom pin store: `set(key, variant, ttlSeconds)`; null when not sticky.
        ttlSeconds: flag.sticky_ttl_ms === null ? null : flag.sticky_ttl_ms / 1000,
        // Whether the native evaluators decide alone (pins, if any, in the in-memory store).
        direct: !custom || flag.sticky_ttl_ms === null,
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
  constructor(flag, id, payload, reason, ruleId, bucket, revision, killSource, shadow, budget, isShadow, hash) {
    /** The flag key that was evaluated. */
    this.flag = flag
    /** The variant id; the caller's default (or null) for an unknown flag. */
    this.id = id
    /** The variant's payload, deeply frozen and shared by every result of this document; null for an unknown flag. */
    this.payload = payload
    /** FLAG_NOT_FOUND, KILLED, GUARDRAIL, STICKY, BUDGET, TARGETING_MATCH, SPLIT or DEFAULT. */
    this.reason = reason
    /** The id of the rule that decided, or null. */
    this.ruleId = ruleId
    /** The unit's bucket when a split or ramp decided, or null. */
    this.bucket = bucket
    /** The revision of the document that made this decision. */
    this.revision = revision
    /** For KILLED: document, flag, local-all, local-flag, guardrail or budget; otherwise null. */
    this.killSource = killSource
    /** The id of the shadow variant drawn for this decision (run beside it by `call`), or null. */
    this.shadow = shadow
    /** The id of the budget that decided (reason BUDGET, or KILLED by a budget), or null. */
    this.budget = budget
    /** True only for the Variant given to the function of a shadow attempt. */
    this.isShadow = isShadow
    // The payload hash for cacheKey (null for an unknown flag).
    this._hash = hash
  }

  /**
   * A cache key segmented by flag, variant and variant revision (the payload's hash), with a
   * hash of `parts` when given: `flagrail:v1:<flag>:<variant>:<payload hash>[:<parts hash>]`,
   * the same in every language. Parts are strings or integers (an integer is its decimal text).
   */
  cacheKey(...parts) {
    const texts = new Array(parts.length)
    for (let i = 0; i < parts.length; i++) texts[i] = keyPart(parts[i], i)
    if (typeof this._hash !== 'string') {
      throw new FlagrailError('FLAG_NOT_FOUND', `flag "${this.flag}" was not found: a cache key needs a variant of a known flag`)
    }
    return native.cacheKey(this.flag, this.id, this._hash, texts)
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
      shadow: this.shadow,
      budget: this.budget,
    }
  }
}

const MIN_I64 = -(2n ** 63n)
const MAX_I64 = 2n ** 63n - 1n

/** One cache key part as the text the core hashes (an integer is its decimal text). */
function keyPart(part, i) {
  if (typeof part === 'string') return part
  if (typeof part === 'number' && Number.isSafeInteger(part)) return String(part)
  if (typeof part === 'bigint' && part >= MIN_I64 && part <= MAX_I64) return part.toString()
  const what = typeof part === 'number' ? String(part) : part === null ? 'null' : typeof part
  const error = new TypeError(
    `cacheKey: part ${i} must be a string or an integer (a safe-integer number or a bigint within 64 bits), got ${what}`,
  )
  error.code = 'INVALID_ARGUMENT'
  throw error
}

function unpack(entry, packed, defaultVariant) {
  let high = Math.floor(packed / LOW)
  const low = packed - high * LOW
  let shadow = null
  if (high >= SHADOW_BIT) {
    high -= SHADOW_BIT
    shadow = entry.shadowId
  }
  const tables = entry.tables
  const reason = tables.reasons[low & 7]
  const variant = (low >> 3) & 255
  const rule = (low >> 11) & 255
  const hasBucket = (low & 0x80000) !== 0
  // A KILLED result has no rule: the rule field carries the kill source instead. A result
  // without a bucket carries its budget code in the bucket's bits.
  const killed = reason === 'KILLED'
  return new Variant(
    entry.key,
    variant === 0 ? defaultVariant : entry.variantIds[variant - 1],
    variant === 0 ? null : entry.payloads[variant - 1],
    reason,
    rule === 0 || killed ? null : entry.ruleIds[rule - 1],
    hasBucket ? high : null,
    tables.revision,
    killed && rule !== 0 ? tables.killSources[rule - 1] : null,
    shadow,
    hasBucket || high === 0 ? null : entry.budgetIds[high - 1],
    false,
    variant === 0 ? null : entry.hashes[variant - 1],
  )
}

/** An unpacked result (see src/handle.rs `unpacked`): the first seven of its eight numbers. */
function unpackWide(entry, wide, defaultVariant) {
  const [variant, reason, rule, bucket, kill, shadow, budget] = wide
  const tables = entry.tables
  return new Variant(
    entry.key,
    variant < 0 ? defaultVariant : entry.variantIds[variant],
    variant < 0 ? null : entry.payloads[variant],
    tables.reasons[reason],
    rule < 0 ? null : entry.ruleIds[rule],
    bucket < 0 ? null : bucket,
    tables.revision,
    kill === 0 ? null : tables.killSources[kill - 1],
    shadow < 0 ? null : entry.variantIds[shadow],
    budget === 0 ? null : entry.budgetIds[budget - 1],
    false,
    variant < 0 ? null : entry.hashes[variant],
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
// The Flags of each native slot of this thread, held weakly: reload notices name a slot.
const bySlot = new Map()

// otel.js once loaded (null: @opentelemetry/api is missing, or FLAGRAIL_OTEL=0); undefined
// until the first call.
let otel
function loadOtel() {
  if (process.env.FLAGRAIL_OTEL === '0') return null
  try {
    return require('./otel.js').load()
  } catch {
    return null
  }
}

// The core's OpenFeature reasons by reason code: [flag without rules, flag with rules].
let openFeatureReasons = null
// The native state of a Flags lives in a per-thread slot table; the slot is freed when its
// Flags is collected.
const released = new FinalizationRegistry((slot) => {
  bySlot.delete(slot)
  native.release(slot)
})

// Where reloads are logged: the core's level and text, as Python logs them to its `flagrail`
// logger. Refusals (`error`) and unreadable sources (`warning`) go to stderr; a document that
// went live (`info`) shows with NODE_DEBUG=flagrail. `setLogger` replaces it.
const debugLog = require('node:util').debuglog('flagrail')
const CONSOLE_LOGGER = {
  info: (message) => debugLog('%s', message),
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
}
let reloadLogger = CONSOLE_LOGGER
const LOG_METHOD = { info: 'info', warning: 'warn', error: 'error' }

/**
 * Sends reload log lines to `logger` (an object with `info`, `warn` and `error` methods, such
 * as `console` or a pino/winston logger), or nowhere with `null`. The default writes refusals
 * and unreadable sources to stderr, and successful reloads with NODE_DEBUG=flagrail.
 */
function setLogger(logger) {
  if (logger === null) {
    reloadLogger = null
    return
  }
  if (logger === undefined) {
    reloadLogger = CONSOLE_LOGGER
    return
  }
  for (const method of ['info', 'warn', 'error']) {
    if (typeof logger?.[method] !== 'function') {
      throw invalidArgument(`setLogger(logger): logger.${method} must be a function (or pass null to silence)`)
    }
  }
  reloadLogger = logger
}

// The core's watcher and poller threads push each reload here as it happens (a weak
// thread-safe function: it never keeps the process alive). Logged at once, and the handle's
// queued `reload` / `reload_rejected` events go to its onEvent listeners without waiting for
// the next call.
native.onReloadNotice((notice) => {
  // Level `events`: queued events (a read's exposure) to hand to listeners, nothing to log.
  if (reloadLogger !== null && notice.level !== 'events') {
    try {
      reloadLogger[LOG_METHOD[notice.level] ?? 'warn'](notice.message)
    } catch (err) {
      process.emitWarning(`flagrail: the reload logger threw: ${describeError(err)}`, { code: 'FLAGRAIL_LOGGER' })
    }
  }
  const flags = bySlot.get(notice.slot)?.deref()
  if (flags !== undefined && flags._listeners !== null) flags._drain()
})

const EXPOSURE_OPTIONS = ['windowMs', 'sample', 'maxKeys']

/**
 * Turns on exposures of plain reads for a new handle from a loader's `exposures` option
 * (`true`: the defaults; an object: `windowMs`, `sample`, `maxKeys`; see index.d.ts). The core
 * validates the values; a bad option closes the handle and throws INVALID_ARGUMENT.
 */
function enableExposures(flags, exposures) {
  if (exposures === undefined || exposures === null || exposures === false) return flags
  const values = [undefined, undefined, undefined]
  if (exposures !== true) {
    if (typeof exposures !== 'object' || Array.isArray(exposures)) {
      flags.close()
      throw invalidArgument('exposures must be an object ({ windowMs, sample, maxKeys }), true or null')
    }
    for (const name of Object.keys(exposures)) {
      const slot = EXPOSURE_OPTIONS.indexOf(name)
      if (slot < 0) {
        flags.close()
        throw invalidArgument(`exposures: unknown option ${JSON.stringify(name)} (expected windowMs, sample, maxKeys)`)
      }
      const value = exposures[name]
      if (value === undefined || value === null) continue
      if (typeof value !== 'number') {
        flags.close()
        throw invalidArgument(`exposures: ${name} must be a number`)
      }
      values[slot] = value
    }
  }
  try {
    native.enableExposures(flags._slot, values[0], values[1], values[2])
  } catch (err) {
    flags.close()
    rethrow(err)
  }
  // Reads now take the unit too (see Tables).
  flags._exposing = true
  flags._refresh()
  return flags
}

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
    // The custom pin store (usePinStore), or null for the in-memory one.
    this._pinStore = null
    this._pinStats = { errors: 0, lastError: null }
    // Exposures on (set by the loader right after construction, see enableExposures).
    this._exposing = false
    this._tables = new Tables(native.tables(slot), slot, false, false)
    // onEvent listeners; null until the first one (then the native side queues events).
    this._listeners = null
    bySlot.set(slot, new WeakRef(this))
    // Test overrides (`override`): an AsyncLocalStorage of Map<flag key, variant id>, created
    // by the first override; until then evaluation looks at nothing else.
    this._overrides = null
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
    let verifyKey
    if (opts.verifyKey !== undefined && opts.verifyKey !== null) {
      if (typeof opts.verifyKey !== 'string') throw invalidArgument('verifyKey must be a string (the text of flagrail.pub)')
      verifyKey = opts.verifyKey
    }
    const flags = Flags._from(native.loadFile(file, reload, poll, verifyKey))
    enableExposures(flags, opts.exposures)
    if (opts.events !== undefined && opts.events !== null) {
      try {
        flags.writeEvents(opts.events)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    if (opts.redis !== undefined && opts.redis !== null) {
      try {
        flags._shareState(opts.redis)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    return flags
  }

  /**
   * Loads a flag document from an HTTP(S) URL and polls it in the background (see
   * index.d.ts, `Flags.fromUrl`). Blocks until the first document is fetched, a usable cache
   * serves, or `startupTimeoutMs` passes.
   */
  static fromUrl(url, options) {
    const opts = options === undefined || options === null ? {} : options
    if (url instanceof URL) url = url.href
    if (typeof url !== 'string') throw invalidArgument('url must be a string or a URL')
    const ms = (name, value) => {
      if (value === undefined || value === null) return undefined
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff || (name === 'pollIntervalMs' && value < 1)) {
        throw invalidArgument(`${name} must be a whole number of milliseconds${name === 'pollIntervalMs' ? ' >= 1' : ' >= 0'}`)
      }
      return value
    }
    const text = (name, value) => {
      if (value === undefined || value === null) return undefined
      if (value instanceof URL) return require('node:url').fileURLToPath(value)
      if (typeof value !== 'string') throw invalidArgument(`${name} must be a string`)
      return value
    }
    let headers
    if (opts.headers !== undefined && opts.headers !== null) {
      if (typeof opts.headers !== 'object') throw invalidArgument('headers must be an object of strings')
      headers = []
      for (const [name, value] of Object.entries(opts.headers)) {
        // The value may be a token: never put it in a message.
        if (typeof value !== 'string') throw invalidArgument(`header ${JSON.stringify(name)} must be a string`)
        headers.push(name, value)
      }
    }
    const flags = Flags._from(
      native.loadUrl(url, {
        pollIntervalMs: ms('pollIntervalMs', opts.pollIntervalMs),
        startupTimeoutMs: ms('startupTimeoutMs', opts.startupTimeoutMs),
        timeoutMs: ms('timeoutMs', opts.timeoutMs),
        cachePath: text('cachePath', opts.cachePath),
        verifyKey: text('verifyKey', opts.verifyKey),
        caFile: text('caFile', opts.caFile),
        headers,
      }),
    )
    enableExposures(flags, opts.exposures)
    if (opts.events !== undefined && opts.events !== null) {
      try {
        flags.writeEvents(opts.events)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    if (opts.redis !== undefined && opts.redis !== null) {
      try {
        flags._shareState(opts.redis)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    return flags
  }

  /**
   * Loads a flag document from a Redis key and follows every push at once (pub/sub, with a
   * safety-net poll; see index.d.ts, `Flags.fromRedis`). Never throws because Redis is down:
   * after `startupTimeoutMs` the cache or an empty document serves until Redis returns.
   */
  static fromRedis(url, options) {
    const opts = options === undefined || options === null ? {} : options
    if (url instanceof URL) url = url.href
    if (typeof url !== 'string') throw invalidArgument('url must be a string or a URL')
    const ms = (name, value, least) => {
      if (value === undefined || value === null) return undefined
      if (!Number.isInteger(value) || value < least || value > 0xffffffff) {
        throw invalidArgument(`${name} must be a whole number of milliseconds >= ${least}`)
      }
      return value
    }
    const text = (name, value) => {
      if (value === undefined || value === null) return undefined
      if (value instanceof URL) return require('node:url').fileURLToPath(value)
      if (typeof value !== 'string') throw invalidArgument(`${name} must be a string`)
      return value
    }
    if (opts.key !== undefined && opts.key !== null && (typeof opts.key !== 'string' || opts.key === '')) {
      throw invalidArgument('key must be a non-empty string')
    }
    const flags = Flags._from(
      native.loadRedis(url, {
        key: opts.key === null ? undefined : opts.key,
        pollIntervalMs: ms('pollIntervalMs', opts.pollIntervalMs, 1),
        startupTimeoutMs: ms('startupTimeoutMs', opts.startupTimeoutMs, 0),
        timeoutMs: ms('timeoutMs', opts.timeoutMs, 1),
        cachePath: text('cachePath', opts.cachePath),
        verifyKey: text('verifyKey', opts.verifyKey),
      }),
    )
    enableExposures(flags, opts.exposures)
    if (opts.events !== undefined && opts.events !== null) {
      try {
        flags.writeEvents(opts.events)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    if (opts.redis !== undefined && opts.redis !== null) {
      try {
        flags._shareState(opts.redis, opts.key === null ? undefined : opts.key)
      } catch (err) {
        flags.close()
        throw err
      }
    }
    return flags
  }

  /**
   * Parses and validates a flag document from JSON text, or from its UTF-8 bytes (a `Buffer` or
   * `Uint8Array`, read by the core: invalid UTF-8 is an error, as in the CLI and Python). No
   * reloading.
   */
  static fromJson(text, options) {
    const exposures = options === undefined || options === null ? undefined : options.exposures
    if (text instanceof Uint8Array) return enableExposures(Flags._from(native.loadBytes(text)), exposures)
    if (typeof text !== 'string') throw invalidArgument('fromJson takes the document as a string or a Buffer')
    return enableExposures(Flags._from(native.loadJson(text)), exposures)
  }

  /**
   * Flags for a test from a short mapping (see index.d.ts, `Flags.forTests`):
   * `Flags.forTests({ 'support-bot': 'v2.2' })`.
   */
  static forTests(mapping, options) {
    let text
    try {
      text = JSON.stringify(mapping)
    } catch (err) {
      throw invalidArgument(`forTests: the mapping has no JSON form: ${err.message}`)
    }
    if (typeof text !== 'string') throw invalidArgument('forTests takes an object of flag key -> variant id or variants')
    const exposures = options === undefined || options === null ? undefined : options.exposures
    return enableExposures(Flags._from(native.loadForTests(text)), exposures)
  }

  /** Validates a flag document given as a plain object (as `JSON.parse` returns it). */
  static fromObject(document, options) {
    let text
    try {
      text = JSON.stringify(document)
    } catch (err) {
      throw invalidArgument(`the document has no JSON form: ${err.message}`)
    }
    if (typeof text !== 'string') throw invalidArgument('fromObject takes the document as an object')
    const exposures = options === undefined || options === null ? undefined : options.exposures
    return enableExposures(Flags._from(native.loadJson(text)), exposures)
  }

  /**
   * The variant of `flag` for `context`. Never throws because of the flag, the context or the
   * document: an unknown flag gives `defaultVariant` with reason FLAG_NOT_FOUND, and a context
   * value of a type no condition can use is ignored for matching.
   */
  variant(flag, context, defaultVariant, options) {
    if (this._overrides !== null) {
      const forced = this._forced(flag)
      if (forced !== undefined) return forced
    }
    // Fast path: a known flag, now, a context object: one native call, no allocation but the
    // result.
    if (options === undefined && context !== null && context !== undefined) {
      const entry = this._tables.byKey.get(flag)
      if (entry !== undefined && entry.direct) {
        let packed = STALE
        try {
          packed = entry.read(entry.target, context)
        } catch {
          // A throwing getter: the careful path reads attribute by attribute.
        }
        if (packed >= 0) return unpack(entry, packed, null)
        // Too wide for one number: the native side kept the unpacked result (it is not
        // evaluated twice: the evaluation may have written a pin).
        if (packed === WIDE) return unpackWide(entry, native.takeWide(), null)
      }
    }
    return this._evaluate(flag, context, defaultId(defaultVariant), optionsAt(options))
  }

  /**
   * Runs `fn` with `variant` served for `flag` (see index.d.ts, `Flags.override`) and returns
   * what `fn` returns. The scope is an AsyncLocalStorage: it covers everything `fn` does,
   * awaits included, and nothing outside it, so concurrent tests and requests never see each
   * other's overrides; it ends when `fn` returns or throws (for an async `fn`, its promise
   * keeps the scope until it settles).
   */
  override(flag, variant, fn) {
    if (typeof fn !== 'function') throw invalidArgument('override(flag, variant, fn): fn must be a function')
    if (typeof variant !== 'string') throw invalidArgument('override(flag, variant, fn): variant must be a variant id')
    const key = flagKey(flag)
    const problem = native.checkOverride(this._slot, key, variant)
    if (problem !== null) throw failure(problem)
    if (this._overrides === null) this._overrides = new AsyncLocalStorage()
    const next = new Map(this._overrides.getStore())
    next.set(key, variant)
    return this._overrides.run(next, fn)
  }

  /** The variant forced for `flag` in this async context, as a Variant, or undefined. */
  _forced(flag) {
    const store = this._overrides.getStore()
    if (store === undefined) return undefined
    const key = flagKey(flag)
    const id = store.get(key)
    if (id === undefined) return undefined
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = this._tables.byKey.get(key)
      // Not in our tables: a reload since they were read may have added it (refresh once), or
      // removed it (evaluate as usual).
      if (entry === undefined && attempt > 0) return undefined
      if (entry !== undefined) {
        const packed = native.evalForced(this._slot, entry.index, id)
        if (packed >= 0) return unpack(entry, packed, null)
        if (packed === WIDE) return unpackWide(entry, native.takeWide(), null)
        if (packed === NOT_FORCED) return undefined
      }
      this._refresh()
    }
    return undefined
  }

  /** The variant id an override forces for `key` in this async context, or undefined. */
  _forcedId(key) {
    if (this._overrides === null) return undefined
    const store = this._overrides.getStore()
    return store === undefined ? undefined : store.get(key)
  }

  /** The careful path: unknown flags, `at`, reloads, odd contexts. */
  _evaluate(flag, context, defaultVariant, at) {
    const key = flagKey(flag)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = this._tables.byKey.get(key)
      if (entry === undefined) {
        const packed = native.evalKey(this._slot, key, at)
        if (packed >= 0) return unpack({ key, tables: this._tables }, packed, defaultVariant)
      } else if (entry.direct) {
        const packed = native.evalList(entry.target, readValues(context, entry.readAttributes), at)
        if (packed >= 0) return unpack(entry, packed, defaultVariant)
        if (packed === WIDE) return unpackWide(entry, native.takeWide(), defaultVariant)
      } else {
        const variant = this._evaluatePinned(entry, context, defaultVariant, at)
        if (variant !== undefined) return variant
      }
      this._refresh()
    }
    return new Variant(key, defaultVariant, null, 'FLAG_NOT_FOUND', null, null, this._tables.revision, null, null, null, false, null)
  }

  _refresh() {
    this._tables = new Tables(native.tables(this._slot), this._slot, this._pinStore !== null, this._exposing)
  }

  /**
   * A sticky flag with a custom pin store, synchronously: the pin is read when `get` answers
   * synchronously, the flag evaluated with it, and the decision's pin write or delete sent to
   * the store without waiting. Undefined when the tables are stale.
   */
  _evaluatePinned(entry, context, defaultVariant, at) {
    const store = this._pinStore
    const values = readValues(context, entry.readAttributes)
    const key = native.pinKey(this._slot, entry.index, values, false)
    const pin = key === null ? null : this._readPinSync(store, key)
    const wide = native.evalPinned(this._slot, entry.index, values, pin === PIN_UNKNOWN ? undefined : (pin ?? undefined), at)
    if (wide === null) return undefined
    const variant = unpackWide(entry, wide, defaultVariant)
    if (key !== null && pin !== PIN_UNKNOWN) this._writePin(store, key, wide[7], variant.id, entry.ttlSeconds)
    return variant
  }

  /**
   * The pin `store` holds under `key`, read synchronously: the variant id, null when none, or
   * PIN_UNKNOWN when the store failed or answered with a Promise (then the pin is ignored and
   * not written).
   */
  _readPinSync(store, key) {
    let result
    try {
      result = store.get(key)
    } catch (err) {
      this._pinError('get', err)
      return PIN_UNKNOWN
    }
    if (isThenable(result)) {
      // A synchronous read cannot wait: a miss for this evaluation, counted as a store error
      // (as in Python); the promise itself is left to settle, its rejection handled.
      this._pinError('get', 'returned a Promise, which variant() and explain() cannot wait for (call awaits it)')
      try {
        result.then(undefined, () => {})
      } catch {
        // A thenable whose then throws: nothing to handle.
      }
      return PIN_UNKNOWN
    }
    return this._pinValue(result)
  }

  /** `await store.get(key)`, never throwing: as `_readPinSync`, for `call`. */
  async _readPin(store, key) {
    let result
    try {
      result = await store.get(key)
    } catch (err) {
      this._pinError('get', err)
      return PIN_UNKNOWN
    }
    return this._pinValue(result)
  }

  /** What `get` answered: a string (or UTF-8 bytes, as some Redis clients return), or none. */
  _pinValue(result) {
    if (result === null || result === undefined) return null
    if (typeof result === 'string') return result
    if (result instanceof Uint8Array) return Buffer.from(result.buffer, result.byteOffset, result.byteLength).toString('utf8')
    this._pinError('get', `returned ${typeof result}, not a string, null or undefined`)
    return PIN_UNKNOWN
  }

  /**
   * Carries out a decision's pin effect (the core decides: 2 write, 3 delete, others nothing)
   * on `store`: a Promise that never rejects (store errors are counted), or undefined when
   * there was nothing to wait for.
   */
  _writePin(store, key, effect, variantId, ttlSeconds) {
    if (effect !== PIN_WRITE && effect !== PIN_DELETE) return undefined
    const method = effect === PIN_WRITE ? 'set' : 'delete'
    let result
    try {
      result = effect === PIN_WRITE ? store.set(key, variantId, ttlSeconds) : store.delete(key)
    } catch (err) {
      this._pinError(method, err)
      return undefined
    }
    if (!isThenable(result)) return undefined
    return Promise.resolve(result).then(undefined, (err) => this._pinError(method, err))
  }

  /** Counts a failure of the store's `method`, keeping its description for status(). */
  _pinError(method, err) {
    this._pinStats.errors++
    this._pinStats.lastError = `${method}: ${typeof err === 'string' ? err : describeError(err)}`
  }

  /**
   * Keeps the pins of sticky conversations in `store` (shared between processes: Redis, a
   * cache) instead of this handle's in-memory store; `null` goes back to the in-memory store.
   * See `PinStore` in index.d.ts.
   */
  usePinStore(store) {
    if (store !== null && store !== undefined) {
      if (typeof store !== 'object' && typeof store !== 'function') {
        throw invalidArgument('usePinStore(store): store must be an object with get, set and delete, or null')
      }
      for (const method of ['get', 'set', 'delete']) {
        if (typeof store[method] !== 'function') throw invalidArgument(`usePinStore(store): store.${method} must be a function`)
      }
    }
    this._pinStore = store === undefined ? null : store
    const custom = this._pinStore !== null
    for (const entry of this._tables.byKey.values()) entry.direct = !custom || entry.ttlSeconds === null
    // Plans were built for the old `direct` flags.
    this._tables.lastPlan = null
    this._tables.plans = new Map()
    this._tables.planCount = 0
    this._tables.allPlan = null
  }

  /**
   * Several flags for one context, the context read once: an object `{ [key]: Variant }` in
   * the order of `keys`. Each result is the one `variant(key, context)` returns, and every flag
   * is decided on the same document revision (a reload cannot land between two of them). Only
   * the attributes the requested flags use are read from `context`. A key that names no flag
   * gives a FLAG_NOT_FOUND result whose `id` is null; a repeated key appears once.
   */
  variants(context, keys, options) {
    const at = optionsAt(options)
    const tables = this._tables
    let plan = tables.lastPlan
    if (plan === null || !Array.isArray(keys) || !plan.sameKeys(keys)) {
      if (typeof keys === 'string' || keys === null || keys === undefined || typeof keys[Symbol.iterator] !== 'function') {
        throw invalidArgument('variants: keys must be an array (or other iterable) of flag keys, not a single string (use variant())')
      }
      const list = Array.isArray(keys) ? keys : [...keys]
      for (let i = 0; i < list.length; i++) {
        if (typeof list[i] !== 'string') throw invalidArgument(`variants: keys[${i}] must be a string flag key, got ${typeof list[i]}`)
      }
      // Each flag once (a repeated key is decided once, as in Python).
      plan = this._plan(tables, list)
      if (plan === null) return this._variants(context, distinct(list), at)
    }
    if (at === undefined && context !== null && context !== undefined && plan.run !== null && this._noOverrides()) {
      const results = plan.run(context)
      if (results !== undefined) return results
    }
    return this._variants(context, plan.distinct, at)
  }

  /**
   * Every flag of the live document for one context, the context read once: `{ [key]: Variant }`
   * in document order (see `variants`).
   */
  all(context, options) {
    const at = optionsAt(options)
    const tables = this._tables
    if (tables.allPlan === null) tables.allPlan = new Plan(tables, this._slot, null, [...tables.byKey.keys()])
    const plan = tables.allPlan
    if (at === undefined && context !== null && context !== undefined && plan.run !== null && this._noOverrides()) {
      const results = plan.run(context)
      if (results !== undefined) return results
    }
    return this._variants(context, null, at)
  }

  /** Whether no test override is open in this async context (plans skip the overrides). */
  _noOverrides() {
    return this._overrides === null || this._overrides.getStore() === undefined
  }

  /**
   * The plan of `tables` for the key list `list` (validated: an array of strings), made on
   * first use and kept by its first key (lists built per call hit it too); null past
   * MAX_PLANS lists.
   */
  _plan(tables, list) {
    const first = list.length === 0 ? '' : list[0]
    let candidates = tables.plans.get(first)
    if (candidates !== undefined) {
      for (const candidate of candidates) {
        if (candidate.sameKeys(list)) {
          tables.lastPlan = candidate
          return candidate
        }
      }
    }
    if (tables.planCount >= MAX_PLANS) return null
    const plan = new Plan(tables, this._slot, list, distinct(list))
    if (candidates === undefined) {
      candidates = []
      tables.plans.set(first, candidates)
    }
    candidates.push(plan)
    tables.planCount++
    tables.lastPlan = plan
    return plan
  }

  _variants(context, keys, at) {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const tables = this._tables
      const list = keys === null ? [...tables.byKey.keys()] : keys
      const entries = list.map((key) => tables.byKey.get(key))
      // Test overrides open in this async context serve their variant, as in `variant()`; the
      // flags they cover are not evaluated (no pin written for them).
      const forced = this._overrides === null ? null : list.map((key) => this._forced(key))
      const names = tables.attributes
      const values = new Array(names.length)
      const read = new Array(names.length)
      const readable = context !== null && context !== undefined
      const direct = []
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]
        if (entry === undefined || !entry.direct || (forced !== null && forced[i] !== undefined)) continue
        direct.push(entry.index)
        if (!readable) continue
        for (const slot of entry.readAttributeSlots) {
          if (read[slot] !== true) {
            read[slot] = true
            values[slot] = readAttr(context, names[slot])
          }
        }
      }
      const numbers = native.evalMany(this._slot, direct, values, at)
      if (numbers === null || numbers === undefined) {
        this._refresh()
        continue
      }
      const results = {}
      let next = 0
      let wide = direct.length
      for (let i = 0; i < list.length; i++) {
        const key = list[i]
        const entry = entries[i]
        let variant
        if (forced !== null && forced[i] !== undefined) {
          variant = forced[i]
        } else if (entry === undefined) {
          variant = new Variant(key, null, null, 'FLAG_NOT_FOUND', null, null, tables.revision, null, null, null, false, null)
        } else if (entry.direct) {
          const packed = numbers[next++]
          if (packed === WIDE) {
            variant = unpackWide(entry, numbers.slice(wide, wide + 8), null)
            wide += 8
          } else {
            variant = unpack(entry, packed, null)
          }
        } else {
          // A sticky flag with a custom pin store: read, decide and write its pin one at a time.
          variant = this._evaluatePinned(entry, context, null, at) ?? this._evaluate(key, context, null, at)
        }
        // A flag may be called `__proto__`: defined, not assigned (which would set the prototype).
        if (key === '__proto__') Object.defineProperty(results, key, { value: variant, enumerable: true, writable: true, configurable: true })
        else results[key] = variant
      }
      return results
    }
    return {}
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
      const index = entry === undefined ? -1 : entry.index
      let text
      if (entry === undefined || entry.direct) {
        text = native.explain(this._slot, index, key, values, at)
      } else {
        // A custom pin store: read the pin (synchronously, as variant() does); write nothing.
        const pinKey = native.pinKey(this._slot, index, values, false)
        const pin = pinKey === null ? null : this._readPinSync(this._pinStore, pinKey)
        text = native.explain(this._slot, index, key, values, at, true, typeof pin === 'string' ? pin : undefined)
      }
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
    const status = JSON.parse(native.status(this._slot))
    const stats = this._pinStats
    status.sticky_store = {
      kind: this._pinStore === null ? 'memory' : 'custom',
      errors: stats.errors,
      last_error: stats.lastError,
    }
    return status
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

  /**
   * Stops watching the file (or polling the URL) and, with `redis`, stops sharing state
   * (spend is reported and leases given back first); the last document keeps serving.
   * Idempotent.
   */
  close() {
    native.close(this._slot)
    native.fleetClose(this._slot)
  }

  /**
   * Shares budgets, guardrails, metrics and pins through the Redis at `url` and installs the
   * built-in Redis pin store (see index.d.ts, `FlagsOptions.redis`).
   */
  _shareState(url, documentKey) {
    if (typeof url !== 'string') throw invalidArgument('redis must be a string: redis://host:port/db or redis+cluster://host:port,...')
    native.fleetAttach(this._slot, url, documentKey)
    const slot = this._slot
    this.usePinStore({
      get: (key) => native.fleetPinGet(slot, key),
      set: (key, value, ttlSeconds) => native.fleetPinSet(slot, key, value, ttlSeconds),
      delete: (key) => native.fleetPinDelete(slot, key),
    })
  }

  /**
   * The whole fleet's aggregates (a `Flags` opened with `redis`): every process's `metrics()`
   * added up, with `$fleet` (processes, the fleet's guardrail states). No round trip: the
   * background thread reads them every second.
   */
  fleetMetrics() {
    return JSON.parse(native.fleetMetrics(this._slot))
  }

  /** `fleetMetrics()` in the Prometheus text format (`flagrail_fleet_*` series). */
  fleetMetricsText() {
    return native.fleetMetricsText(this._slot)
  }

  /**
   * Calls `fn` through the flag's fallback chain and returns what served (see index.d.ts,
   * `Flags.call`): the assigned variant first, with its timeout, then the flag's `fallback`
   * list; a throw, a rejection, a timeout or a `Reject` moves to the next step, and a non-AI
   * variant serves without calling `fn`. The core plans the chain and records every attempt;
   * this only runs `fn` and reports back.
   */
  call(flag, context, fn, callOptions) {
    // OpenTelemetry spans when @opentelemetry/api can be loaded (otel.js, resolved once on the
    // first call); otherwise, or with FLAGRAIL_OTEL=0, the plain chain.
    if (otel === undefined) otel = loadOtel()
    if (otel === null) return this._call(flag, context, fn, callOptions)
    return otel.traceCall(this, flag, context, fn, callOptions)
  }

  /** `call` without spans: the chain itself. */
  async _call(flag, context, fn, callOptions) {
    if (typeof fn !== 'function') throw invalidArgument('call(flag, context, fn): fn must be a function')
    const signal = callSignal(callOptions)
    // The caller gave up before anything started: nothing is evaluated or recorded.
    if (signal !== undefined && signal.aborted) throw signal.reason
    const key = flagKey(flag)
    // Made from inside the function of too many enclosing calls: the core's error, before
    // anything is evaluated or recorded.
    if (callDepth >= MAX_CALL_DEPTH) {
      try {
        native.enterCall(key, callDepth)
      } catch (err) {
        rethrow(err)
      }
    }
    let out = OUT
    let entry = this._tables.byKey.get(key)
    let run = -1
    // A sticky flag with a custom pin store: { store, key } of the conversation's pin.
    let pinned = null
    // A test override in this async context: the chain starts at its variant (careful loop).
    const forced = this._forcedId(key)
    // Fast path: a known flag without a custom pin store and a context object, one raw native
    // call. Anything else (a throwing getter, stale tables, a pin store, a failure to report)
    // takes the careful loop below.
    if (forced === undefined && entry !== undefined && entry.direct && entry.start !== null && context !== null && context !== undefined) {
      try {
        const started = entry.start(entry.target, context)
        if (started >= 0) run = started
      } catch {
        // A getter threw before the native call: no run was started.
      }
    }
    for (let attempt = 0; run < 0; attempt++) {
      if (attempt === MAX_ATTEMPTS) {
        throw new FlagrailError('SOURCE_UNREACHABLE', 'the document changed during every attempt to start the call')
      }
      if (attempt > 0) this._refresh()
      entry = this._tables.byKey.get(key)
      let started
      if (entry === undefined) {
        started = native.runStart(this._slot, -1, key, NO_VALUES, out)
      } else if (entry.direct || forced !== undefined) {
        started = native.runStart(this._slot, entry.index, undefined, readValues(context, entry.runAttributes), out, forced)
      } else {
        // Awaiting the store lets other calls run: this call gets its own result array.
        out = new Float64Array(3)
        pinned = await this._startPinned(entry, context, out)
        started = pinned.started
      }
      if (typeof started !== 'number') throw failure(started)
      run = started
    }
    // `out` is shared by every call on this thread: read it before anything else can run.
    const packed = out[0]
    let step = out[1]
    let ended = false
    // The shadow run of this call (-1: none) and its first step. Its attempt starts once the
    // chain has ended (`chainEnded`), never before or beside the served one.
    let shadowRun = -1
    let shadowStep = 0
    let chainEnded = false
    let entryUsed = entry
    let baseUsed = null
    try {
      let base
      let assigned
      if (packed >= 0) {
        base = unpack(entry, packed, null)
        assigned = (((packed % LOW) >> 3) & 255) - 1
      } else {
        const wide = native.runEvaluationWide(run)
        base = unpackWide(entry, wide, null)
        assigned = wide[0]
      }
      if (this._listeners !== null) this._drain()
      if (pinned !== null && pinned.key !== null) {
        await this._writePin(pinned.store, pinned.key, out[2], base.id, entry.ttlSeconds)
      }
      // A shadow drawn: its run is opened now (its hourly cap checked and reserved), its
      // attempt starts after the chain, and outcomes carry the output.
      const shadowed = base.shadow !== null
      if (shadowed) {
        shadowRun = this._openShadow(run)
        if (shadowRun >= 0) shadowStep = OUT[0]
      }
      const shadow = shadowRun >= 0 ? base.shadow : null
      entryUsed = entry
      baseUsed = base
      const attempts = []
      for (let calls = 1; ; calls++) {
        const low = step % STEP_LOW
        const kind = low & 3
        const index = low >>> 2
        if (kind === STEP_EXHAUSTED) {
          const error = new FlagrailError('ALL_ATTEMPTS_FAILED', native.runExhaustedMessage(run))
          error.attempts = attempts
          ended = true
          chainEnded = true
          error.runId = native.runEnd(run)
          if (this._listeners !== null) this._drain()
          throw error
        }
        const variant = index === assigned ? base : stepVariant(entry, base, index)
        if (kind === STEP_SERVE) {
          ended = true
          chainEnded = true
          const runId = native.runEnd(run)
          if (this._listeners !== null) this._drain()
          return callResult(null, variant, attempts, index !== assigned, runId, base.id, shadow)
        }
        const timeoutMs = Math.floor(step / STEP_LOW) - 1
        const options = new CallOptions(calls, timeoutMs < 0 ? null : timeoutMs, false)
        let value
        let thrown
        let failed = false
        try {
          if (signal !== undefined) value = await withSignal(fn, variant, options, timeoutMs, signal)
          else value = timeoutMs < 0 ? await invoke(fn, variant, options) : await withTimeout(fn, variant, options, timeoutMs)
        } catch (err) {
          failed = true
          thrown = err
        }
        if (failed && isCallDepthError(thrown)) {
          // A programming error, not the model's: the attempt is recorded as cancelled (its
          // reservation given back) and every enclosing call ends with the same error.
          ended = true
          native.runCancel(run)
          if (this._listeners !== null) this._drain()
          throw thrown
        }
        if (value === ABORTED) {
          // The caller's signal: the core records the attempt as cancelled and gives its
          // reservation back; no further step.
          ended = true
          native.runCancel(run)
          if (this._listeners !== null) this._drain()
          throw signal.reason
        }
        if (!failed && value !== TIMED_OUT) {
          let usage = null
          let runId
          if (value instanceof Output) {
            usage = value
            value = value.value
            if (shadowed) native.runSetOutput(run, outputJson(value))
            runId = native.runSucceed(run, out, usage.inputTokens ?? undefined, usage.outputTokens ?? undefined, usage.cost ?? undefined)
          } else {
            if (shadowed) native.runSetOutput(run, outputJson(value))
            // The raw entry point writes the shared buffer; a pinned call has its own `out`.
            runId = out === OUT ? native.runSucceedRaw(OUT_BUFFER, run) : undefined
            if (typeof runId !== 'string') runId = native.runSucceed(run, out)
          }
          ended = true
          chainEnded = true
          const cost = out[1]
          attempts.push(attemptRecord(variant.id, null, null, out[0], usage, cost === cost ? cost : null))
          if (this._listeners !== null) this._drain()
          return callResult(value, variant, attempts, index !== assigned, runId, base.id, shadow)
        }
        let errorKind
        let message
        if (failed) {
          errorKind = classifyError(thrown)
          message = attemptText(thrown)
        } else {
          errorKind = TIMEOUT
          message = native.timeoutText(timeoutMs)
        }
        step = native.runFail(run, errorKind, message, out)
        attempts.push(attemptRecord(variant.id, ERROR_KINDS[errorKind], message, out[0], null, null))
        if (this._listeners !== null) this._drain()
      }
    } finally {
      if (!ended) native.runEnd(run)
      if (shadowRun >= 0) {
        if (chainEnded) this._scheduleShadow(entryUsed, baseUsed, shadowRun, shadowStep, fn)
        else native.runEnd(shadowRun)
      }
    }
  }

  /**
   * Starts a call of a sticky flag whose pins live in the custom store: reads the pin (awaiting
   * the store), then starts the run with it, its results in `out` (`[evaluation, step, pin
   * effect]`). `{ started, store, key }`; `key` is null when the context names no
   * conversation, `store` is the store the pin was read from (and is written to).
   */
  async _startPinned(entry, context, out) {
    const store = this._pinStore
    const values = readValues(context, entry.runAttributes)
    const key = native.pinKey(this._slot, entry.index, values, true)
    const pin = key === null ? null : await this._readPin(store, key)
    // The document may have changed while the store answered: runStartPinned then says STALE.
    const started = native.runStartPinned(this._slot, entry.index, values, typeof pin === 'string' ? pin : undefined, out)
    return { started, store, key: pin === PIN_UNKNOWN ? null : key }
  }

  /**
   * Opens the shadow run of run `run` (its evaluation drew a shadow): its slot, with its first
   * step in `OUT[0]`, or -1 when the shadow's hourly cost cap left no room or it could not
   * start. A shadow never fails the call.
   */
  _openShadow(run) {
    try {
      return native.runShadow(run, OUT)
    } catch (err) {
      process.emitWarning(`flagrail: a shadow attempt could not start: ${describeError(err)}`, { code: 'FLAGRAIL_SHADOW' })
      return -1
    }
  }

  /**
   * Starts the attempt of shadow run `run` on a later turn of the event loop, once the call
   * has settled and its caller has resumed: even a shadow that blocks synchronously never
   * delays the served answer. Nothing waits for it; whatever it does is recorded as a shadow
   * outcome.
   */
  _scheduleShadow(entry, base, run, step, fn) {
    setImmediate(() => {
      this._runShadow(entry, base, run, step, fn).then(undefined, () => {})
    })
  }

  async _runShadow(entry, base, run, step, fn) {
    let ended = false
    try {
      const low = step % STEP_LOW
      if ((low & 3) !== STEP_CALL) return
      const index = low >>> 2
      const timeoutMs = Math.floor(step / STEP_LOW) - 1
      const variant = stepVariant(entry, base, index, true)
      const options = new CallOptions(1, timeoutMs < 0 ? null : timeoutMs, true)
      let value
      let thrown
      let failed = false
      try {
        value = timeoutMs < 0 ? await fn(variant, options) : await withTimeout(fn, variant, options, timeoutMs)
      } catch (err) {
        failed = true
        thrown = err
      }
      if (!failed && value !== TIMED_OUT) {
        const usage = value instanceof Output ? value : null
        native.runSetOutput(run, outputJson(usage === null ? value : usage.value))
        ended = true
        if (usage === null) native.runSucceed(run, SHADOW_OUT)
        else native.runSucceed(run, SHADOW_OUT, usage.inputTokens ?? undefined, usage.outputTokens ?? undefined, usage.cost ?? undefined)
      } else {
        const errorKind = failed ? classifyError(thrown) : TIMEOUT
        const message = failed ? attemptText(thrown) : native.timeoutText(timeoutMs)
        native.runFail(run, errorKind, message, SHADOW_OUT)
      }
    } catch (err) {
      // Never reaches the caller: the served response does not depend on the shadow.
      process.emitWarning(`flagrail: a shadow attempt could not be recorded: ${describeError(err)}`, { code: 'FLAGRAIL_SHADOW' })
    } finally {
      if (!ended) native.runEnd(run)
      if (this._listeners !== null) this._drain()
    }
  }

  /**
   * A tracker for a model call the app makes itself with a variant it already has (from
   * `variant()`): report it once with `success(...)` or `error(...)`. `context` supplies the
   * unit and segment labels (the flag's `bucket_by` attribute and `segment`).
   * @throws FlagrailError `FLAG_NOT_FOUND` for a variant of an unknown flag.
   */
  tracker(variant, context) {
    if (variant === null || typeof variant !== 'object' || typeof variant.flag !== 'string') {
      throw invalidArgument('tracker(variant, context): variant must be a Variant from variant()')
    }
    const tables = this._tables
    const entry = tables.byKey.get(variant.flag)
    const reason = tables.reasons.indexOf(variant.reason)
    // Kill source codes start at 1 (flagrail_core::codes); 0 is none.
    const killSource = variant.killSource == null ? 0 : tables.killSources.indexOf(variant.killSource) + 1
    const started = native.trackerStart(
      this._slot,
      entry === undefined ? -1 : entry.index,
      variant.flag,
      typeof variant.id === 'string' ? variant.id : undefined,
      reason < 0 ? 0 : reason,
      typeof variant.ruleId === 'string' ? variant.ruleId : undefined,
      typeof variant.bucket === 'number' ? variant.bucket : undefined,
      killSource,
      String(variant.revision),
      entry === undefined ? NO_VALUES : readValues(context, entry.runAttributes),
    )
    if (typeof started !== 'number') throw failure(started)
    if (this._listeners !== null) this._drain()
    return new Tracker(this, started, variant)
  }

  /**
   * Attaches user feedback (`score`, -1..1) and/or a quality score (0..1) to the run that
   * served `runId` (from a call result or a tracker): metrics, quality guardrails and a
   * `feedback` event. The first score and the first quality of a run count; later ones are
   * ignored. Returns false when the run is unknown (never seen, or too old) or every value
   * given was already counted; throws INVALID_ARGUMENT for a value out of its range.
   */
  feedback(runId, options) {
    if (typeof runId !== 'string') throw invalidArgument('feedback(runId, options): runId must be a string')
    const opts = options === undefined || options === null ? {} : options
    const score = optionalNumber(opts.score, 'score')
    const quality = optionalNumber(opts.quality, 'quality')
    let known
    try {
      known = native.feedback(this._slot, runId, score, quality)
    } catch (err) {
      rethrow(err)
    }
    if (this._listeners !== null) this._drain()
    return known
  }

  /**
   * In-memory aggregates per flag, variant (and segment): requests, errors by kind, latency,
   * tokens, cost, feedback, and each guardrail's state and reading. Field names are the
   * cross-language ones (the same as Python's `metrics()`).
   */
  metrics() {
    return JSON.parse(native.metrics(this._slot))
  }

  /** The metrics in the Prometheus text exposition format (for a `/metrics` endpoint). */
  metricsText() {
    return native.metricsText(this._slot)
  }

  /**
   * Calls `listener(event)` for every telemetry event of this `Flags` (exposure, outcome,
   * feedback, guardrail_trip, guardrail_probe, guardrail_recover), synchronously before the
   * call that produced it returns. Events are plain frozen objects with the cross-language
   * field names. A listener that throws is reported as a process warning, never to the
   * caller. Returns a function that removes the listener.
   */
  onEvent(listener) {
    if (typeof listener !== 'function') throw invalidArgument('onEvent(listener): listener must be a function')
    if (this._listeners === null) {
      native.listen(this._slot)
      this._listeners = []
    }
    this._listeners.push(listener)
    return () => {
      const at = this._listeners.indexOf(listener)
      if (at >= 0) this._listeners.splice(at, 1)
    }
  }

  /**
   * The OpenFeature resolution reason of `variant` (for flagrail/openfeature and the spans;
   * not public API): the core's table, where the default of a flag without rules is STATIC.
   */
  _openFeatureReason(variant) {
    const tables = this._tables
    const entry = tables.byKey.get(variant.flag)
    const code = tables.reasons.indexOf(variant.reason)
    // A variant of another revision than the tables': as a flag with rules (DEFAULT).
    const hasRules = entry === undefined || tables.revision !== variant.revision || entry.ruleIds.length > 0
    if (openFeatureReasons === null) openFeatureReasons = [native.openFeatureReasons(false), native.openFeatureReasons(true)]
    return openFeatureReasons[hasRules ? 1 : 0][code] ?? 'UNKNOWN'
  }

  /** Dispatches the queued events to the listeners. */
  _drain() {
    const text = native.takeEvents(this._slot)
    if (text === null) return
    const listeners = this._listeners.slice()
    for (const event of JSON.parse(text)) {
      deepFreeze(event)
      for (const listener of listeners) {
        try {
          listener(event)
        } catch (err) {
          process.emitWarning(`flagrail: an onEvent listener threw: ${describeError(err)}`, { code: 'FLAGRAIL_LISTENER' })
        }
      }
    }
  }

  /**
   * Appends every future event to a JSON-lines file (one object per line; safe with several
   * writers).
   * @throws FlagrailError `SOURCE_UNREACHABLE` when the file cannot be opened.
   */
  writeEvents(file) {
    if (file instanceof URL) file = require('node:url').fileURLToPath(file)
    if (typeof file !== 'string') throw invalidArgument('writeEvents(path): path must be a string or a file: URL')
    try {
      native.writeEvents(this._slot, file)
    } catch (err) {
      rethrow(err)
    }
  }

  /**
   * Replaces unit ids in events by `h:` + a keyed hash (HMAC-SHA-256 with `key`, 16 bytes in
   * hex), so no raw id leaves the process while events of one unit still join. `null` sends
   * units as they are.
   */
  hashUnits(key) {
    let bytes
    if (key === null || key === undefined) bytes = undefined
    else if (typeof key === 'string') bytes = Buffer.from(key, 'utf8')
    else if (key instanceof Uint8Array) bytes = Buffer.from(key.buffer, key.byteOffset, key.byteLength)
    else throw invalidArgument('hashUnits(key): key must be a string, a Uint8Array or null')
    if (bytes !== undefined && bytes.length === 0) throw invalidArgument('hashUnits(key): the key must not be empty')
    native.hashUnits(this._slot, bytes)
  }
}

// ---- The runtime around the call ---------------------------------------------------------

/** Error kinds by code, in the core's order (`ErrorKind::ALL`). */
const ERROR_KINDS = Object.freeze(native.errorKinds())
const TIMEOUT = ERROR_KINDS.indexOf('timeout')
const REJECTED = ERROR_KINDS.indexOf('rejected')
// A packed step (src/runtime.rs): kind + 4 * variant + 2^24 * (timeout_ms + 1).
const STEP_LOW = 16777216
const STEP_EXHAUSTED = 0
const STEP_CALL = 1
const STEP_SERVE = 2
const NO_VALUES = Object.freeze([])
/**
 * Where runtime entry points put a second result number (src/runtime.rs); read at once. The
 * raw entry points (src/raw.rs) take the `ArrayBuffer` itself, which Node-API reads faster
 * than a typed array.
 */
const OUT_BUFFER = new ArrayBuffer(16)
const OUT = new Float64Array(OUT_BUFFER)
/** Where shadow attempts' results go (never read: shadows report nothing back to the caller). */
const SHADOW_OUT = new Float64Array(2)
/** What a timed-out attempt resolves to (never a value `fn` can return). */
const TIMED_OUT = Symbol('flagrail.timedOut')
/** Longest error description kept in a warning. */
const MAX_MESSAGE = 1000
/** Longest message sent to the core for an attempt's text (which it cuts at 1,000 characters). */
const MAX_MESSAGE_SENT = 4096
/** What an attempt resolves to when the caller's signal aborted it. */
const ABORTED = Symbol('flagrail.aborted')

/**
 * "Not good enough": thrown from the function given to `call`, it fails the attempt with the
 * kind `rejected` and moves the call to the next step of the chain.
 */
class Reject extends Error {
  constructor(message, options) {
    super(message, options)
    this.name = 'Reject'
    /** The error kind this attempt is recorded with. */
    this.errorKind = 'rejected'
  }
}

/** A reported measurement: a number (checked by the core, `checkUsage`), or undefined. */
function reportedNumber(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number') throw invalidArgument(`${name} must be a number`)
  return value
}

/**
 * Throws INVALID_ARGUMENT for a latency or cost the core refuses (NaN, infinite, negative) or a
 * token count it refuses (not whole, negative, over 2^53 - 1): one call into the core.
 */
function checkUsage(latencyMs, cost, inputTokens, outputTokens) {
  const problem = native.usageProblem(latencyMs, cost, inputTokens, outputTokens)
  if (problem !== null && problem !== undefined) throw failure(problem)
}

function optionalNumber(value, name) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidArgument(`${name} must be a finite number`)
  return value
}

/**
 * A value returned from the function given to `call` with what the call used:
 * `return new Output(text, { inputTokens, outputTokens, cost })`. The call's result value is
 * `value`; the usage goes to the attempt, the metrics and the events (a missing `cost` is
 * computed from the tokens and the variant's prices).
 */
class Output {
  constructor(value, usage) {
    const u = usage === undefined || usage === null ? {} : usage
    /** The result value. */
    this.value = value
    /** Prompt tokens, or null. */
    this.inputTokens = reportedNumber(u.inputTokens, 'inputTokens') ?? null
    /** Completion tokens, or null. */
    this.outputTokens = reportedNumber(u.outputTokens, 'outputTokens') ?? null
    /** The call's cost (any currency unit, the same as the variant's prices), or null. */
    this.cost = reportedNumber(u.cost, 'cost') ?? null
    checkUsage(undefined, this.cost ?? undefined, this.inputTokens ?? undefined, this.outputTokens ?? undefined)
  }
}

/**
 * The second argument of the function given to `call`. `signal` aborts when the attempt's
 * time is up; it is made on first use, so a function that never reads it pays nothing.
 */
class CallOptions {
  constructor(attempt, timeoutMs, shadow) {
    this.attempt = attempt
    this.timeoutMs = timeoutMs
    /** True for the attempt of a shadow variant, whose result is only recorded. */
    this.shadow = shadow
    this._controller = null
    this._reason = undefined
  }

  get signal() {
    if (this._controller === null) {
      this._controller = new AbortController()
      if (this._reason !== undefined) this._controller.abort(this._reason)
    }
    return this._controller.signal
  }

  _abort(reason) {
    this._reason = reason
    if (this._controller !== null) this._controller.abort(reason)
  }
}

// How many `call`s are running their `fn` synchronously on this thread right now: a `call`
// made before the first `await` of another call's `fn` nests on the JS stack, and past the
// core's limit it fails with CALL_DEPTH_EXCEEDED instead of a stack overflow recorded as the
// model's error. (A call made after an `await` starts on a fresh stack: it is not nested.)
let callDepth = 0
const MAX_CALL_DEPTH = native.maxCallDepth()

/** Whether a thrown value is the CALL_DEPTH_EXCEEDED of a nested call (any value: a revoked
 * Proxy throws on every operation, and is not one). */
function isCallDepthError(err) {
  try {
    return err instanceof FlagrailError && err.code === 'CALL_DEPTH_EXCEEDED'
  } catch {
    return false
  }
}

/** Calls the user's `fn` for one attempt, counting the nesting of calls on this stack. */
function invoke(fn, variant, options) {
  callDepth++
  try {
    return fn(variant, options)
  } finally {
    callDepth--
  }
}

/**
 * Runs `fn` and settles with its outcome or, at `timeoutMs`, with TIMED_OUT (aborting the
 * signal), whichever comes first: a function that ignores its signal still ends the attempt on
 * time. Its late result or rejection is ignored.
 */
function withTimeout(fn, variant, options, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      resolve(TIMED_OUT)
      options._abort(new DOMException(`flagrail: the attempt timed out after ${timeoutMs} ms`, 'TimeoutError'))
    }, timeoutMs)
    let pending
    try {
      pending = invoke(fn, variant, options)
    } catch (err) {
      clearTimeout(timer)
      reject(err)
      return
    }
    Promise.resolve(pending).then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err) => {
        clearTimeout(timer)
        reject(err)
      },
    )
  })
}

/** The caller's `{ signal }` of `call`, checked: an AbortSignal or undefined. */
function callSignal(callOptions) {
  if (callOptions === undefined || callOptions === null) return undefined
  if (typeof callOptions !== 'object') throw invalidArgument('call(flag, context, fn, options): options must be an object')
  const signal = callOptions.signal
  if (signal === undefined || signal === null) return undefined
  if (!(signal instanceof AbortSignal)) throw invalidArgument('call(flag, context, fn, { signal }): signal must be an AbortSignal')
  return signal
}

/**
 * `withTimeout` (or the plain attempt, `timeoutMs` < 0) that also settles with ABORTED when
 * the caller's `signal` aborts, aborting the attempt's own signal with the same reason.
 */
function withSignal(fn, variant, options, timeoutMs, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      resolve(ABORTED)
      options._abort(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    const done = () => signal.removeEventListener('abort', onAbort)
    let pending
    try {
      pending = timeoutMs < 0 ? invoke(fn, variant, options) : withTimeout(fn, variant, options, timeoutMs)
    } catch (err) {
      done()
      reject(err)
      return
    }
    Promise.resolve(pending).then(
      (value) => {
        done()
        resolve(value)
      },
      (err) => {
        done()
        reject(err)
      },
    )
  })
}

/** Reads a property of a thrown value; a throwing getter reads as undefined. */
function readField(value, name) {
  try {
    return value[name]
  } catch {
    return undefined
  }
}

function stringField(value, name) {
  const field = readField(value, name)
  return typeof field === 'string' ? field : undefined
}

/**
 * The error kind (its code) of a thrown value, decided by the core from what it says. Any
 * value works, even one whose every operation throws (a revoked Proxy): it is then `other`.
 */
function classifyError(err) {
  try {
    return classifyValue(err)
  } catch {
    return native.classifyError(undefined, '', undefined, undefined, '')
  }
}

function classifyValue(err) {
  if (err instanceof Reject) return REJECTED
  if (err === null || (typeof err !== 'object' && typeof err !== 'function')) {
    return native.classifyError(undefined, '', undefined, undefined, describeError(err))
  }
  const declared = stringField(err, 'errorKind') ?? stringField(err, 'error_kind')
  let name = stringField(err, 'name')
  if (name === undefined || name === 'Error') {
    const ctor = readField(err, 'constructor')
    const ctorName = typeof ctor === 'function' ? stringField(ctor, 'name') : undefined
    name = ctorName || name || ''
  }
  let status = readField(err, 'status') ?? readField(err, 'statusCode')
  if (typeof status === 'string' && /^\d{3}$/.test(status)) status = Number(status)
  if (typeof status !== 'number') status = undefined
  let code = readField(err, 'code')
  if (typeof code === 'number') code = String(code)
  if (typeof code !== 'string') code = undefined
  const message = stringField(err, 'message') ?? ''
  return native.classifyError(declared, name, status, code, message)
}

/**
 * The `attempts[].error` text of a thrown value: the core makes it from the value's name (its
 * `name`, or its class for an unnamed Error subclass) and message, the same text as Python's.
 * A value with no message is shown by its JSON text (a thrown plain object) or its String()
 * form; one that cannot be read at all (a revoked Proxy) still gets a text.
 */
function attemptText(err) {
  let name = ''
  let message = ''
  try {
    if (err !== null && (typeof err === 'object' || typeof err === 'function')) {
      name = errorName(err)
      const field = readField(err, 'message')
      if (typeof field === 'string') message = field
      else if (name === '') message = jsonText(err)
    } else {
      message = String(err)
    }
  } catch {
    // Shown as the core's text for an error that says nothing.
  }
  // Long texts are cut by the core at 1,000 characters; never send megabytes across.
  if (message.length > MAX_MESSAGE_SENT) message = message.slice(0, MAX_MESSAGE_SENT)
  return native.attemptText(name, message)
}

/** The name a thrown object gives itself: `name`, or its class for an unnamed subclass. */
function errorName(err) {
  let name = stringField(err, 'name')
  if (name === undefined || name === 'Error') {
    const ctor = readField(err, 'constructor')
    const ctorName = typeof ctor === 'function' ? stringField(ctor, 'name') : undefined
    if (ctorName !== undefined && ctorName !== 'Object') name = ctorName || name
  }
  return name ?? ''
}

function jsonText(value) {
  try {
    const text = JSON.stringify(value)
    if (typeof text === 'string' && text !== '{}') return text
  } catch {
    // A cycle, a bigint, a throwing getter: the String() form instead.
  }
  try {
    return String(value)
  } catch {
    return ''
  }
}

/** A thrown value as a short text for warnings and pin store errors. */
function describeError(err) {
  let text
  try {
    if (err instanceof Reject) text = err.message
    else if (err instanceof Error) text = `${err.name}: ${err.message}`
    else text = String(err)
  } catch {
    text = 'an error that cannot be shown'
  }
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text
}

function attemptRecord(variant, errorKind, error, latencyMs, usage, cost) {
  return {
    variant,
    outcome: errorKind === null ? 'success' : 'error',
    errorKind,
    error,
    latencyMs,
    inputTokens: usage === null ? null : usage.inputTokens,
    outputTokens: usage === null ? null : usage.outputTokens,
    cost: cost ?? null,
  }
}

function callResult(value, variant, attempts, fallbackUsed, runId, assigned, shadow) {
  return { value, variant, attempts, fallbackUsed, runId, assigned, shadow }
}

/**
 * A step's variant: its own id and payload, the evaluation's reason, rule, bucket, shadow and
 * budget (`isShadow` for the variant of a shadow attempt).
 */
function stepVariant(entry, base, index, isShadow) {
  return new Variant(
    entry.key,
    entry.variantIds[index],
    entry.payloads[index],
    base.reason,
    base.ruleId,
    base.bucket,
    base.revision,
    base.killSource,
    base.shadow,
    base.budget,
    isShadow === true,
    entry.hashes[index],
  )
}

/**
 * The function's result as JSON text for outcome events (runs with a shadow): a value JSON
 * cannot hold (a bigint, a cycle, a function) as its String() form, undefined as null.
 */
function outputJson(value) {
  if (value === undefined) return 'null'
  let text
  try {
    text = JSON.stringify(value)
  } catch {
    text = undefined
  }
  if (typeof text === 'string') return text
  let fallback
  try {
    fallback = String(value)
  } catch {
    fallback = Object.prototype.toString.call(value)
  }
  return JSON.stringify(fallback)
}

// A tracker that is collected without a report frees its native run.
const unreported = new FinalizationRegistry((run) => native.runEnd(run))

/** A model call the app makes itself, reported once (see `Flags.tracker`). */
class Tracker {
  constructor(flags, run, variant) {
    this._flags = flags
    this._run = run
    /** The variant being tracked. */
    this.variant = variant
    /** The run id, for `flags.feedback(runId, ...)`. */
    this.runId = native.runId(run)
    unreported.register(this, run, this)
  }

  /**
   * The call succeeded. `latencyMs` overrides the time since `tracker()`; a missing `cost` is
   * computed from the tokens and the variant's prices. Returns false when this tracker was
   * already reported (nothing is recorded twice).
   */
  success(usage) {
    return this._report(-1, undefined, usage)
  }

  /**
   * The call failed: with an error kind (`'timeout'`, `'rate_limit'`, `'server'`,
   * `'content_policy'`, `'rejected'`, `'other'`, `'invalid_request'`) or the thrown error, which is classified like
   * a failed `call` attempt. Returns false when this tracker was already reported.
   */
  error(kindOrError, usage) {
    let kind
    let message
    if (typeof kindOrError === 'string') {
      const code = native.errorKindCode(kindOrError)
      if (typeof code !== 'number') throw failure(code)
      kind = code
    } else {
      kind = classifyError(kindOrError)
      message = attemptText(kindOrError)
    }
    return this._report(kind, message, usage)
  }

  _report(kind, message, usage) {
    if (this._run < 0) return false
    const u = usage === undefined || usage === null ? {} : usage
    const latencyMs = reportedNumber(u.latencyMs, 'latencyMs')
    const input = reportedNumber(u.inputTokens, 'inputTokens')
    const output = reportedNumber(u.outputTokens, 'outputTokens')
    const cost = reportedNumber(u.cost, 'cost')
    checkUsage(latencyMs, cost, input, output)
    const run = this._run
    this._run = -1
    unreported.unregister(this)
    if (kind < 0) {
      native.runSucceed(run, OUT, input, output, cost, latencyMs)
    } else {
      native.runFail(run, kind, message, OUT, input, output, cost, latencyMs)
      native.runEnd(run)
    }
    if (this._flags._listeners !== null) this._flags._drain()
    return true
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
 * hash as their decimal text). Throws INVALID_ARGUMENT for other units, totals outside
 * `1..2^32-1`, and a salt or unit with a lone surrogate (no UTF-8 form, docs/bucketing.md §2).
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

/** JSON text of `value` for the addon, or INVALID_ARGUMENT naming `what`. */
function jsonOf(value, what) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (err) {
    throw invalidArgument(`${what} has no JSON form: ${err.message}`)
  }
  if (typeof text !== 'string') throw invalidArgument(`${what} must be a JSON value, got ${typeof value}`)
  return text
}

/**
 * Reviews the change from `oldDocument` to `newDocument` before it goes live, as `flagrail diff`
 * does: what changed per flag, and which share of units moves from which variant to which,
 * overall, per segment of the new document and along its ramps (see index.d.ts, `diff`). The
 * logic, limits and messages are the core's, shared with Python's `flagrail.diff`.
 */
function diff(oldDocument, newDocument, options) {
  const opts = options === undefined || options === null ? {} : options
  let population = null
  if (opts.population !== undefined && opts.population !== null) {
    if (typeof opts.population === 'string' || typeof opts.population[Symbol.iterator] !== 'function') {
      throw invalidArgument('population must be an array (or other iterable) of contexts')
    }
    population = jsonOf(Array.from(opts.population), 'population')
  }
  for (const name of ['users', 'seed']) {
    if (opts[name] !== undefined && typeof opts[name] !== 'number') {
      throw invalidArgument(`${name} must be a number, got ${typeof opts[name]}`)
    }
  }
  const result = native.review(
    jsonOf(oldDocument, 'old'),
    jsonOf(newDocument, 'new'),
    population,
    opts.users,
    opts.seed,
    toMillis(opts.at),
  )
  if (typeof result === 'string') return JSON.parse(result)
  throw failure(result)
}

/** The bucketing algorithm version this build implements (docs/bucketing.md). */
const HASH_VERSION = native.HASH_VERSION

module.exports = { Flags, Flag, Variant, FlagrailError, Reject, Output, bucket, diff, setLogger, HASH_VERSION }
