#!/usr/bin/env bash
# Runs redis-vitals (release build). Arguments go to redis-vitals as they
# are, e.g. ./scripts/run.sh --log.level debug. Without --redis.addr (or
# REDIS_ADDR, or --config.file) it watches localhost:6379, and if nothing
# answers there it installs (when missing) and starts a throwaway
# redis-server, stopped again when the exporter exits. Without
# --web.listen-address it listens on 127.0.0.1:9121.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  # Needed only for the throwaway node, but cheap; keeps the script simple.
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools
fi

# What the caller chose already (both --flag value and --flag=value).
own_targets="${REDIS_ADDR:-}${REDIS_VITALS_CONFIG:-}"
own_listen=""
for arg in "$@"; do
  case "$arg" in
    --redis.addr|--redis.addr=*|--config.file|--config.file=*) own_targets=1 ;;
    --web.listen-address|--web.listen-address=*) own_listen=1 ;;
  esac
done
defaults=()
[ -n "$own_targets" ] || defaults+=(--redis.addr redis://127.0.0.1:6379)
[ -n "$own_listen" ] || defaults+=(--web.listen-address 127.0.0.1:9121)

started=""
if [ -z "$own_targets" ] && ! redis-cli -h 127.0.0.1 -p 6379 PING >/dev/null 2>&1; then
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
[ -n "$own_listen" ] || echo "redis-vitals: http://127.0.0.1:9121/ (metrics at /metrics); Ctrl-C stops"
./target/release/redis-vitals "${defaults[@]}" "$@" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; cleanup' INT TERM
wait $pid
