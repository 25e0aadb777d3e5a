'use strict'
// Flags.fromRedis against a real redis-server started here on 127.0.0.1 (and a 3-node Redis
// Cluster for the push path): pushes through the CLI reach the handle at once, a bad document
// keeps the last good one, Redis down at start never throws. redis-server and redis-cli must
// be installed: these tests fail without them. Waits are bounded and wait for state.

const assert = require('node:assert/strict')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const { test } = require('node:test')

const { Flags, FlagrailError } = require('..')

const REPO = path.join(__dirname, '..', '..')
const CLI = path.join(REPO, 'target', 'debug', 'flagrail')
const KEY = 'flagrail:document'
const CHANNEL = 'flagrail:{flagrail:document}:changed'

function binary(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {}
  }
  throw new Error(`${name} is not installed (apt-get install redis-server; .ci/run does it)`)
}

function bindable(port) {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

async function freePort(withBus) {
  for (let i = 0; i < 200; i++) {
    const port = await new Promise((resolve, reject) => {
      const server = net.createServer()
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address()
        server.close(() => resolve(port))
      })
      server.on('error', reject)
    })
    if (!withBus || (port < 55000 && (await bindable(port + 10000)))) return port
  }
  throw new Error('no free loopback port')
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

function redisCli(port, ...args) {
  const done = spawnSync(binary('redis-cli'), ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8' })
  if (done.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${done.stderr}`)
  return done.stdout
}

/** One redis-server (optionally cluster-enabled) on a free loopback port, in its own directory. */
async function startServer(dir, cluster = false) {
  fs.mkdirSync(dir, { recursive: true })
  const port = await freePort(cluster)
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--daemonize', 'no']
  if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000')
  const server = { port, dir, args, child: null, url: `redis://127.0.0.1:${port}` }
  server.start = async () => {
    server.child = spawn(binary('redis-server'), args, { cwd: dir, stdio: 'ignore' })
    await waitFor('redis-server', () => {
      try {
        return redisCli(port, 'ping').trim() === 'PONG'
      } catch {
        return false
      }
    })
  }
  server.stop = () =>
    new Promise((resolve) => {
      if (!server.child || server.child.exitCode !== null) return resolve()
      server.child.once('exit', () => resolve())
      server.child.kill('SIGKILL')
    })
  await server.start()
  return server
}

async function startCluster(dir) {
  const nodes = []
  for (let i = 0; i < 3; i++) nodes.push(await startServer(path.join(dir, `node${i}`), true))
  const addresses = nodes.map((n) => `127.0.0.1:${n.port}`)
  redisCli(nodes[0].port, '--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes')
  await waitFor('cluster_state:ok', () => nodes.every((n) => redisCli(n.port, 'cluster', 'info').includes('cluster_state:ok')))
  return { url: `redis+cluster://${addresses.join(',')}`, stop: () => Promise.all(nodes.map((n) => n.stop())) }
}

function chatDocument(revision) {
  return {
    revision,
    flags: {
      chat: {
        variants: { control: { model: 'model-a', rev: revision }, candidate: { model: 'model-b', rev: revision } },
        default: 'control',
      },
    },
  }
}

function push(dir, url, document) {
  fs.writeFileSync(path.join(dir, 'flags.json'), JSON.stringify(document))
  const done = spawnSync(CLI, ['push', 'flags.json', '--redis', url, '--actor', 'node-test'], { cwd: dir, encoding: 'utf8' })
  assert.equal(done.status, 0, done.stderr)
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flagrail-redis-node-'))
}

for (const mode of ['single', 'cluster']) {
  test(`a push reaches the handle at once (${mode})`, async () => {
    const dir = tempDir()
    const redis = mode === 'single' ? await startServer(path.join(dir, 'redis')) : await startCluster(path.join(dir, 'cluster'))
    try {
      push(dir, redis.url, chatDocument('r1'))
      // The safety-net poll is 10 minutes away: only the message can reload it.
      const flags = Flags.fromRedis(redis.url, { pollIntervalMs: 600000 })
      try {
        assert.equal(flags.status().revision, 'r1')
        assert.equal(flags.status().remote.kind, 'redis')
        await waitFor('the subscription', () => flags.status().remote.subscribed)
        push(dir, redis.url, chatDocument('r2'))
        await waitFor('r2', () => flags.status().revision === 'r2')
        assert.equal(flags.status().remote.redis_revision, 2)
        assert.ok(flags.status().remote.messages >= 1)
        assert.equal(flags.variant('chat').payload.rev, 'r2')
      } finally {
        flags.close()
      }
    } finally {
      await redis.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
}

test('a bad document keeps the last good one and says why', async () => {
  const dir = tempDir()
  const redis = await startServer(path.join(dir, 'redis'))
  try {
    push(dir, redis.url, chatDocument('r1'))
    const flags = Flags.fromRedis(redis.url, { key: KEY, pollIntervalMs: 600000 })
    try {
      await waitFor('the subscription', () => flags.status().remote.subscribed)
      const bad = chatDocument('r2-bad')
      bad.flags.chat.default = 'missing-variant'
      redisCli(redis.port, 'set', KEY, JSON.stringify(bad))
      redisCli(redis.port, 'publish', CHANNEL, '2')
      await waitFor('the rejection', () => flags.status().rejected >= 1)
      assert.equal(flags.status().revision, 'r1')
      const error = flags.status().remote.last_error
      assert.equal(error.code, 'INVALID_DOCUMENT')
      assert.match(error.message, /flags\.chat\.default/)
    } finally {
      flags.close()
    }
  } finally {
    await redis.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('Redis down at start never throws; the document loads when it returns', async () => {
  const dir = tempDir()
  const redis = await startServer(path.join(dir, 'redis'))
  await redis.stop()
  try {
    const flags = Flags.fromRedis(redis.url, { startupTimeoutMs: 200 })
    try {
      assert.equal(flags.status().revision, 'redis:waiting')
      assert.equal(flags.status().remote.connected, false)
      assert.equal(flags.status().remote.last_error.code, 'SOURCE_UNREACHABLE')
      assert.equal(flags.variant('chat', {}, 'control').reason, 'FLAG_NOT_FOUND')
      await redis.start()
      push(dir, redis.url, chatDocument('r1-after'))
      await waitFor('the document after Redis returned', () => flags.status().revision === 'r1-after')
      assert.equal(flags.status().remote.document_loaded, true)
    } finally {
      flags.close()
    }
  } finally {
    await redis.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('arguments are checked', () => {
  for (const url of ['http://x', 'redis://h:1,h:2']) {
    assert.throws(() => Flags.fromRedis(url), (err) => err instanceof FlagrailError && err.code === 'INVALID_ARGUMENT' && /REDIS_URL_INVALID/.test(err.message))
  }
  assert.throws(() => Flags.fromRedis('redis://127.0.0.1:1', { key: '' }), (err) => err.code === 'INVALID_ARGUMENT')
  assert.throws(() => Flags.fromRedis('redis://127.0.0.1:1', { pollIntervalMs: 0 }), (err) => err.code === 'INVALID_ARGUMENT')
})
