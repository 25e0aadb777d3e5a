'use strict'
// Flags.fromUrl against a real nginx started here (unprivileged, on 127.0.0.1): changes are
// picked up with 304s in between, headers are sent (and never shown), a cold start serves the
// cache, signatures are checked (keys made with node:crypto, a second
// implementation of ed25519), close() stops polling, worker threads each poll, and a poller
// never keeps the process alive. nginx must be installed: these tests fail without it.

const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { test } = require('node:test')
const { Worker } = require('node:worker_threads')

const { Flags, FlagrailError } = require('..')

const ADDON = path.join(__dirname, '..')

function nginxBinary() {
  for (const dir of (process.env.PATH || '').split(path.delimiter).concat(['/usr/sbin'])) {
    const candidate = path.join(dir, 'nginx')
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  throw new Error('nginx is not installed (apt-get install nginx-light; .ci/run does it)')
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(what, predicate, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

async function startNginx() {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-nginx-'))
  fs.mkdirSync(path.join(prefix, 'www'))
  fs.mkdirSync(path.join(prefix, 'tmp'))
  const port = await freePort()
  const log = path.join(prefix, 'access.log')
  fs.writeFileSync(
    path.join(prefix, 'nginx.conf'),
    `daemon off; master_process off; pid nginx.pid; error_log stderr;
events {}
http {
  log_format status '$status $request_uri $http_authorization';
  access_log ${log} status;
  types { application/json json; }
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
  server { listen 127.0.0.1:${port}; root www; }
}
`,
  )
  const child = spawn(nginxBinary(), ['-p', prefix, '-c', 'nginx.conf', '-e', 'stderr'], { stdio: 'ignore' })
  await waitFor('nginx to listen', () => {
    const probe = spawnSync(process.execPath, ['-e', `require('net').connect(${port}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`])
    return probe.status === 0
  })
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    publish(name, data) {
      const tmp = path.join(prefix, 'www', `.${name}.tmp`)
      fs.writeFileSync(tmp, data)
      fs.renameSync(tmp, path.join(prefix, 'www', name))
    },
    requests: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []),
    stop() {
      child.kill('SIGTERM')
      fs.rmSync(prefix, { recursive: true, force: true })
    },
  }
}

function doc(revision) {
  return JSON.stringify({
    revision,
    flags: { chat: { variants: { on: { model: 'm', rev: revision }, off: { ai: false } }, default: 'on', kill: { active: false, serve: 'off' } } },
  })
}

test('fromUrl picks up a replaced document, mostly with 304s, and close() stops polling', async () => {
  const nginx = await startNginx()
  try {
    nginx.publish('flags.json', doc('r1'))
    const flags = Flags.fromUrl(nginx.url('flags.json'), { pollIntervalMs: 50 })
    assert.equal(flags.revision, 'r1')
    assert.equal(flags.status().source, `url:${nginx.url('flags.json')}`)
    // For 2 s after a change polls are unconditional (HTTP dates and nginx's ETag have 1 s
    // resolution); after that an unchanged document is a 304 every time.
    await waitFor('the first 304', () => flags.status().remote.not_modified >= 1)
    const settled = nginx.requests().length
    await waitFor('ten more 304s', () => flags.status().remote.not_modified >= 11)
    const steady = nginx.requests().slice(settled).map((line) => line.split(' ')[0])
    assert.ok(steady.filter((s) => s === '304').length > 2 * steady.filter((s) => s === '200').length, steady.join(','))
    nginx.publish('flags.json', doc('r2-replaced'))
    await waitFor('the new document', () => flags.revision === 'r2-replaced')
    assert.equal(flags.variant('chat', { user_id: 'u' }).payload.rev, 'r2-replaced')
    const remote = flags.status().remote
    assert.equal(remote.consecutive_failures, 0)
    assert.ok(remote.etag && remote.last_success)

    flags.close()
    assert.equal(flags.status().watching, false)
    await sleep(200)
    const count = nginx.requests().length
    await sleep(500)
    assert.equal(nginx.requests().length, count)
    flags.close()
  } finally {
    nginx.stop()
  }
})

test('headers are sent and never shown; a cold start with the server down serves the cache', async () => {
  const nginx = await startNginx()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-cache-'))
  const cachePath = path.join(dir, 'flags.cache.json')
  const url = nginx.url('flags.json')
  try {
    nginx.publish('flags.json', doc('r1-cached'))
    const first = Flags.fromUrl(url, { pollIntervalMs: 50, cachePath, headers: { Authorization: 'Bearer s3cret-token' } })
    try {
      assert.equal(first.revision, 'r1-cached')
      assert.ok(nginx.requests().some((line) => line.endsWith(' Bearer s3cret-token')), 'the header reached nginx')
      assert.ok(!JSON.stringify(first.status()).includes('s3cret-token'), 'status() never shows it')
      await waitFor('the cache file', () => fs.existsSync(cachePath))
      assert.equal(first.status().remote.served_from_cache, false)
    } finally {
      first.close()
    }
  } finally {
    nginx.stop()
  }
  // The server is gone: a new handle starts from the cache at once and keeps polling.
  const cold = Flags.fromUrl(url, { pollIntervalMs: 50, cachePath })
  try {
    assert.equal(cold.revision, 'r1-cached')
    assert.equal(cold.status().remote.served_from_cache, true)
    assert.equal(cold.variant('chat', { user_id: 'u' }).id, 'on')
  } finally {
    cold.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a verify key rejects unsigned and wrongly signed documents (SIGNATURE_INVALID)', async () => {
  const nginx = await startNginx()
  try {
    const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519')
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
    const verifyKey = `ed25519:${raw.toString('hex')}`
    const sign = (text, key = privateKey) => `ed25519:${crypto.sign(null, Buffer.from(text), key).toString('hex')}\n`
    nginx.publish('flags.json', doc('r1'))
    nginx.publish('flags.json.sig', sign(doc('r1')))
    const flags = Flags.fromUrl(nginx.url('flags.json'), { pollIntervalMs: 50, verifyKey })
    assert.equal(flags.revision, 'r1')
    assert.equal(flags.status().remote.signed, true)

    const other = crypto.generateKeyPairSync('ed25519').privateKey
    nginx.publish('flags.json.sig', sign(doc('r2-bad'), other))
    nginx.publish('flags.json', doc('r2-bad'))
    await waitFor('the rejection', () => flags.status().remote.last_error?.code === 'SIGNATURE_INVALID')
    assert.equal(flags.revision, 'r1')

    nginx.publish('flags.json.sig', sign(doc('r3-good')))
    nginx.publish('flags.json', doc('r3-good'))
    await waitFor('the signed document', () => flags.revision === 'r3-good')
    flags.close()
  } finally {
    nginx.stop()
  }
})

test('no server and no cache throws SOURCE_UNREACHABLE; bad options throw INVALID_ARGUMENT', async () => {
  const port = await freePort()
  assert.throws(
    () => Flags.fromUrl(`http://127.0.0.1:${port}/flags.json`, { startupTimeoutMs: 200 }),
    (err) => err instanceof FlagrailError && err.code === 'SOURCE_UNREACHABLE',
  )
  assert.throws(() => Flags.fromUrl('ftp://x/flags.json'), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromUrl('http://127.0.0.1:1/f', { verifyKey: 'nope' }), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromUrl('http://127.0.0.1:1/f', { pollIntervalMs: 0 }), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(
    () => Flags.fromUrl('http://127.0.0.1:1/f', { headers: { Authorization: 42 } }),
    (err) => err.code === 'INVALID_ARGUMENT' && !String(err.message).includes('42'),
  )
})

test('every worker thread polls with its own handle', async () => {
  const nginx = await startNginx()
  try {
    nginx.publish('flags.json', doc('r1'))
    const script = `
      const { parentPort, workerData } = require('node:worker_threads')
      const { Flags } = require(workerData.addon)
      const flags = Flags.fromUrl(workerData.url, { pollIntervalMs: 50 })
      const started = Date.now()
      const timer = setInterval(() => {
        if (flags.revision === 'r2-worker' || Date.now() - started > 20000) {
          clearInterval(timer)
          parentPort.postMessage({ revision: flags.revision, polls: flags.status().remote.polls })
          flags.close()
        }
      }, 10)
      parentPort.postMessage('ready')`
    const workers = [0, 1].map(() => new Worker(script, { eval: true, workerData: { addon: ADDON, url: nginx.url('flags.json') } }))
    const results = workers.map(
      (worker) =>
        new Promise((resolve, reject) => {
          worker.on('message', (m) => m !== 'ready' && resolve(m))
          worker.on('error', reject)
        }),
    )
    const ready = workers.map((worker) => new Promise((resolve) => worker.once('message', resolve)))
    await Promise.all(ready)
    // A different size: nginx's ETag is the mtime in seconds plus the size.
    nginx.publish('flags.json', doc('r2-worker'))
    for (const result of await Promise.all(results)) {
      assert.equal(result.revision, 'r2-worker')
      assert.ok(result.polls > 0)
    }
    await Promise.all(workers.map((w) => w.terminate()))
  } finally {
    nginx.stop()
  }
})

test('a polling handle never keeps the process alive', async () => {
  const nginx = await startNginx()
  try {
    nginx.publish('flags.json', doc('r1'))
    const script = `
      const { Flags } = require(${JSON.stringify(ADDON)})
      const flags = Flags.fromUrl(${JSON.stringify(nginx.url('flags.json'))}, { pollIntervalMs: 50 })
      console.log(flags.revision)`
    const run = spawnSync(process.execPath, ['-e', script], { timeout: 20000, encoding: 'utf8' })
    assert.equal(run.signal, null, 'the process had to be killed: something kept it alive')
    assert.equal(run.status, 0, run.stderr)
    assert.equal(run.stdout.trim(), 'r1')
  } finally {
    nginx.stop()
  }
})

test('file handles created and dropped share one watcher thread', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-watchers-'))
  try {
    const files = Array.from({ length: 50 }, (_, i) => path.join(dir, `f${i}.json`))
    for (const f of files) fs.writeFileSync(f, doc('r1'))
    const comm = (task) => {
      try {
        return fs.readFileSync(`/proc/self/task/${task}/comm`, 'utf8').trim()
      } catch {
        return null // the thread ended between the listing and the read
      }
    }
    const reloadThreads = () => fs.readdirSync('/proc/self/task').filter((t) => comm(t) === 'flagrail-reload').length
    // Never more than one; exactly one once it runs (a new thread takes its name when it is
    // first scheduled, so right after a spawn it may not be counted yet).
    const oneWatcherThread = () => {
      const count = reloadThreads()
      assert.ok(count <= 1, `${count} watcher threads`)
      return count === 1
    }
    for (let round = 0; round < 6; round++) {
      const handles = files.map((f) => Flags.fromFile(f, { pollInterval: 20 }))
      await waitFor('one watcher thread', oneWatcherThread, 5000)
      for (const h of handles) h.close()
    }
    const handles = files.map((f) => Flags.fromFile(f, { pollInterval: 20 }))
    for (const f of files) {
      fs.writeFileSync(`${f}.tmp`, doc('r2-longer'))
      fs.renameSync(`${f}.tmp`, f)
    }
    await waitFor('every handle to reload', () => handles.every((h) => h.revision === 'r2-longer'))
    assert.ok(oneWatcherThread())
    for (const h of handles) h.close()
    await waitFor('the watcher to end', () => reloadThreads() === 0, 5000)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
