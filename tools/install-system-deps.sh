#!/usr/bin/env bash
# Installs the system programs the tests start for real (redis-server and redis-cli for the
# fleet tests, nginx for HTTP polling, chromium for the HTML report, openssl for TLS fixtures)
# when they are missing. Debian's packages via apt-get; a no-op when everything is present.
set -euo pipefail

# program on PATH (or at the path given) -> Debian package that provides it
declare -A package_of=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [nginx]=nginx-light
  [chromium]=chromium
  [openssl]=openssl
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
for program in "${!package_of[@]}"; do
  have "$program" || missing+=("${package_of[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing missing system packages: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: install these with apt-get yourself: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages would start services through invoke-rc.d; tests start their own instances.
for program in "${!package_of[@]}"; do
  have "$program" || { echo "still missing after apt-get: $program" >&2; exit 1; }
done
