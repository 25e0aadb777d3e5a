'use strict'
// Packs the npm tarball of a release: node scripts/pack.js OUT_DIR
//
// Builds the addon with cargo --release, strips its symbols, and packs a staging copy of the
// package (package.json, README.md and the `files` of package.json, with that addon as
// flagrail.node) with `npm pack`, so the development addon in this directory (a debug build,
// ~25 MB) is neither shipped nor replaced. Prints the tarball's path.
//
// No npm dependency and no network: `npm pack` of a package without dependencies reads only
// the staged files.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const packageDir = path.join(__dirname, '..')
const out = path.resolve(process.argv[2] ?? path.join(packageDir, '..', 'dist'))

function run(command, args, options) {
  const done = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...options })
  if (done.error) {
    console.error(`flagrail pack: cannot run ${command}: ${done.error.message}`)
    process.exit(1)
  }
  if (done.status !== 0) {
    console.error(`flagrail pack: ${command} ${args.join(' ')} failed (exit ${done.status})`)
    process.exit(done.status ?? 1)
  }
  return done.stdout
}

// The release addon, stripped (scripts/build.js --release --strip writes it to flagrail.node
// beside a temporary name; here it goes to the staging directory instead).
const workspace = path.join(packageDir, '..')
const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(workspace, process.env.CARGO_TARGET_DIR) : path.join(workspace, 'target')
run('cargo', ['build', '-q', '--release', '-p', 'flagrail-node'], { cwd: workspace, stdio: ['ignore', 'inherit', 'inherit'] })
const library = { darwin: 'libflagrail_node.dylib', win32: 'flagrail_node.dll' }[process.platform] ?? 'libflagrail_node.so'

const stage = path.join(targetDir, 'npm-stage')
fs.rmSync(stage, { recursive: true, force: true })
fs.mkdirSync(stage, { recursive: true })
const manifest = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8'))
for (const file of [...manifest.files.filter((f) => f !== 'flagrail.node'), 'README.md']) {
  fs.copyFileSync(path.join(packageDir, file), path.join(stage, file))
}
// The staged package.json has no scripts: its `prepack` would rebuild into the source tree.
delete manifest.scripts
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
const addon = path.join(stage, 'flagrail.node')
fs.copyFileSync(path.join(targetDir, 'release', library), addon)
if (process.platform !== 'win32') {
  run('strip', process.platform === 'darwin' ? ['-x', addon] : ['--strip-unneeded', addon])
}

fs.mkdirSync(out, { recursive: true })
const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: stage })
const [{ filename }] = JSON.parse(packed)
console.log(path.join(out, filename))
