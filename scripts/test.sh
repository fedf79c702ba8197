#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need when it is missing
# (redis-server, which the tests start themselves on free ports; Chromium, Node.js and
# playwright-core for the UI's browser test), then runs every test once with one shared build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, installed when missing (root with apt-get only).
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
  else
    echo "missing: $* (install them, e.g. 'apt-get install $*', and rerun)" >&2
    exit 2
  fi
}

# The tests start their own redis-server on free ports.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
# The UI's end-to-end test drives Debian's Chromium with playwright-core (no browser download).
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
if [ ! -d tests/ui/node_modules/playwright-core ]; then
  echo "installing playwright-core (tests/ui/package-lock.json)" >&2
  npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error >/dev/null
fi
export SYMPHAINY_UI_TESTS=required
# The disk-full test mounts a small tmpfs: required where that is possible (root).
if [ "$(id -u)" = 0 ]; then export SYMPHAINY_DISK_FULL_TESTS=required; fi

cargo test --workspace --all-targets --no-fail-fast "$@"
