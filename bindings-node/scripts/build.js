'use strict'
// Builds the native addon from source with cargo and installs it as flagrail.node, the file
// index.js loads. Usage: node scripts/build.js [--release] [--strip]
// (`--strip` removes the symbols: what `npm pack` runs as `prepack`, so a tarball packed from
// here never carries the ~25 MB debug build.)
//
// The copy goes through a temporary file and a rename, so a process that is loading the addon
// never sees half a file. No npm dependency: the napi CLI is not needed for a plain cargo build
// (see ../shared/reference/toolchain.md, "No CLI").

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const release = process.argv.includes('--release')
const strip = process.argv.includes('--strip')
const packageDir = path.join(__dirname, '..')
const workspace = path.join(packageDir, '..')
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(workspace, process.env.CARGO_TARGET_DIR)
  : path.join(workspace, 'target')

const args = ['build', '-q', '-p', 'flagrail-node', ...(release ? ['--release'] : [])]
const built = spawnSync('cargo', args, { cwd: workspace, stdio: 'inherit' })
if (built.error) {
  console.error(`flagrail: cannot run cargo: ${built.error.message}`)
  process.exit(1)
}
if (built.status !== 0) process.exit(built.status ?? 1)

const library = {
  darwin: 'libflagrail_node.dylib',
  win32: 'flagrail_node.dll',
}[process.platform] ?? 'libflagrail_node.so'
const source = path.join(targetDir, release ? 'release' : 'debug', library)
const destination = path.join(packageDir, 'flagrail.node')
const temporary = `${destination}.tmp`
fs.copyFileSync(source, temporary)
if (strip && process.platform !== 'win32') {
  const args = process.platform === 'darwin' ? ['-x', temporary] : ['--strip-unneeded', temporary]
  const stripped = spawnSync('strip', args, { stdio: 'inherit' })
  if (stripped.error || stripped.status !== 0) {
    console.error(`flagrail: strip failed: ${stripped.error ? stripped.error.message : `exit ${stripped.status}`}`)
    process.exit(1)
  }
}
fs.renameSync(temporary, destination)
