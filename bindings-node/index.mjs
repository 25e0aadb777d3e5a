// ESM entry of flagrail: the same objects as the CommonJS entry (one addon, one module state).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const flagrail = require('./index.js')

export const { Flags, Flag, Variant, FlagrailError, Reject, Output, bucket, diff, setLogger, HASH_VERSION } = flagrail
export default flagrail
