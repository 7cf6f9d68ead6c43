#!/usr/bin/env bash
# Runs redis-vitals against a local Redis. If nothing answers on
# localhost:6379 it installs (when missing) and starts a throwaway
# redis-server there, stopped again when the exporter exits. Extra
# arguments go to redis-vitals, e.g. ./scripts/run.sh --log.level debug
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools
fi

started=""
if ! redis-cli -h 127.0.0.1 -p 6379 PING >/dev/null 2>&1; then
  dir=$(mktemp -d)
  redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  started="$dir"
  for _ in $(seq 1 50); do redis-cli -p 6379 PING >/dev/null 2>&1 && break; sleep 0.1; done
  echo "started a local redis-server on 127.0.0.1:6379 (data in $dir)"
fi
cleanup() {
  if [ -n "$started" ]; then
    redis-cli -p 6379 SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    rm -rf "$started"
  fi
}
trap cleanup EXIT

cargo build --release --locked --bin redis-vitals
echo "redis-vitals: http://127.0.0.1:9121/ (metrics at /metrics); Ctrl-C stops"
./target/release/redis-vitals --redis.addr redis://127.0.0.1:6379 --web.listen-address 127.0.0.1:9121 "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; cleanup' INT TERM
wait $pid
