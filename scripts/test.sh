#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need when it is missing
# (redis-server, which the tests start themselves on free ports), then runs every test once
# with one shared build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing: installing it with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (e.g. 'apt-get install redis-server') and rerun" >&2
    exit 2
  fi
fi

cargo test --workspace --all-targets --no-fail-fast "$@"
