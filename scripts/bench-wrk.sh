#!/usr/bin/env bash
# The peer comparison, measured the way ../shared/bench/restate/run.sh measures the peer: the
# release server binary in its own process on embedded defaults, driven by wrk (a C client far
# lighter than the Rust load generator, so more of the two cores go to the server). One request
# = submit `runtime.echo` with 3 steps and wait for its result (`wait_ms`), or, with
# MODE=submit, the durable submission alone (202 after fdatasync).
# Usage: scripts/bench-wrk.sh [DURATION_S] [CONNECTIONS...]   (needs wrk: apt-get install wrk)
# Prints one key=value line per connection count. Uses 127.0.0.1:$PORT (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15}; shift || true
conns=("$@"); [ ${#conns[@]} -gt 0 ] || conns=(1 16 64)
port=${PORT:-18080}
mode=${MODE:-saga}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
cargo build --release -q -p symphainy-server
work=$(mktemp -d -p "$PWD" .bench-wrk.XXXXXX)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
"${CARGO_TARGET_DIR:-target}/release/symphainy-server" --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --admin-token "$admin" --tenant-requests-per-sec 10000000 --no-dev-signin \
  >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
curl -sf -X POST "$base/admin/tenants" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' -d '{"tenant_id":"bench"}' >/dev/null
token=$(curl -sf -X POST "$base/admin/tokens" -H "authorization: Bearer $admin" \
  -H 'content-type: application/json' \
  -d '{"tenant_id":"bench","user_id":"wrk","ttl_seconds":86400}' | json token)
session=$(curl -sf -X POST "$base/session/create" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{}' | json session_id)
path="/intent/submit?wait_ms=30000"; [ "$mode" = submit ] && path="/intent/submit"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body   = '{"intent_type":"runtime.echo","session_id":"$session","payload":{"value":"load","steps":3}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
curl -sf -X POST "$base$path" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"intent_type\":\"runtime.echo\",\"session_id\":\"$session\",\"payload\":{\"value\":\"warm\",\"steps\":3}}" >/dev/null
for c in "${conns[@]}"; do
  t=$(( c < 2 ? 1 : 2 ))
  out=$(wrk -t$t -c"$c" -d"${duration}s" --latency -s "$work/post.lua" "$base$path")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  echo "server=symphainy mode=$mode steps=3 connections=$c requests_per_sec=$rps p50=$p50 p99=$p99 non2xx=${errs:-0}"
  # Let the submit mode's backlog of sagas drain before the next count.
  [ "$mode" = submit ] && sleep 5
done
