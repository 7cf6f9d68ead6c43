#!/usr/bin/env bash
# One-command local demo of redis-vitals:
#
#   scripts/demo.sh            # until Ctrl-C
#   scripts/demo.sh --for 10m  # stops by itself after that long
#   scripts/demo.sh --sentinel # a Sentinel setup instead of a cluster
#
# Starts, all on 127.0.0.1 and on free ports, in a temporary directory:
# a 3-master/3-replica Redis Cluster, the load generator
# (redis-vitals-loadgen, a cache-aside workload), the exporter, Alertmanager
# and Prometheus (with the bundled recording and alerting rules), then prints
# where to look. With --sentinel: a master with two replicas watched by
# three Redis Sentinels (master name "demo"), the exporter given only the
# Sentinels' addresses. Ctrl-C or SIGTERM stops every process it started and
# removes the temporary directory; running it again starts afresh.
#
# On a fresh Debian/Ubuntu machine it first installs what is missing
# (redis-server, redis-tools, prometheus, prometheus-alertmanager, python3)
# with apt-get, through sudo when not root. Rust (cargo) must be installed.
# Note that the Debian packages also enable their own system services
# (redis-server on 6379, prometheus on 9090, ...); the demo does not use them.
#
# Options:
#   --for DURATION   stop after DURATION (seconds, or with s/m/h suffix)
#   --no-install     never call apt-get; fail if something is missing
#   --rate N         load generator operations per second (default 300)
#   --sentinel       master + 2 replicas + 3 Sentinels instead of a cluster
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER_NAME="demo"
RUN_FOR=""
INSTALL=1
RATE=300
SENTINEL=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --for) RUN_FOR="${2:?--for needs a duration}"; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --rate) RATE="${2:?--rate needs a number}"; shift 2 ;;
    --sentinel) SENTINEL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ -z "$RUN_FOR" || "$RUN_FOR" =~ ^[0-9]+[smh]?$ ]] || { echo "demo: --for takes a duration like 90, 90s, 10m or 1h" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "demo: --rate takes a number of operations per second" >&2; exit 2; }

log() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# --- 1. Prerequisites --------------------------------------------------------

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 \
  || command -v alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
  ((INSTALL)) || die "missing packages: ${need[*]} (run without --no-install to apt-get them)"
  command -v apt-get >/dev/null 2>&1 || die "missing packages: ${need[*]}, and no apt-get to install them"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${need[*]}"
    sudo="sudo"
  fi
  log "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust first (https://rustup.rs)"
ALERTMANAGER="$(command -v prometheus-alertmanager || command -v alertmanager)"

# --- 2. Build ----------------------------------------------------------------

log "building release binaries (cargo build --release --bins)"
(cd "$ROOT" && cargo build --release --bins --quiet)
EXPORTER="$ROOT/target/release/redis-vitals"
LOADGEN="$ROOT/target/release/redis-vitals-loadgen"
DATASET="$ROOT/target/release/redis-vitals-dataset"
[ -x "$EXPORTER" ] && [ -x "$LOADGEN" ] && [ -x "$DATASET" ] || die "build did not produce $EXPORTER, $LOADGEN and $DATASET"

# --- 3. Cleanup, armed before anything starts --------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/redis-vitals-demo.XXXXXX")"
PIDS=()
CLEANED=0

cleanup() {
  local status=$?
  ((CLEANED)) && return
  CLEANED=1
  trap '' INT TERM
  echo
  log "stopping ${#PIDS[@]} processes"
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give them up to 10 s to exit cleanly, then insist.
  local deadline=$((SECONDS + 10)) alive
  while ((SECONDS < deadline)); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  log "stopped; removed $WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts a command in the background, its output in $WORK/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
}

# Waits up to $2 seconds for command $3... to succeed; $1 names it.
wait_for() {
  local what="$1" timeout="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what (logs in $WORK)"
    # A process that died while we wait will never answer.
    local pid
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || die "a demo process exited early while waiting for $what; logs: $(ls "$WORK"/*.log | tr '\n' ' ')"
    done
    sleep 0.5
  done
}

# --- 4. Free ports -------------------------------------------------------------

# Prints N free loopback ports. For Redis Cluster nodes (--cluster) the bus
# port (port + 10000) must be free as well; both stay below 32768, out of
# the range the kernel hands out to outgoing connections. All sockets are
# held until every port is chosen, so the ports are distinct.
free_ports() {
  python3 - "$@" <<'EOF'
import random, socket, sys
n, cluster = int(sys.argv[1]), "--cluster" in sys.argv
held, ports = [], []
def grab(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s
while len(ports) < n:
    if cluster:
        port = random.randint(10000, 22767)
        if grab(port) and grab(port + 10000):
            ports.append(port)
    else:
        s = grab(0)
        ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)))
EOF
}

read -r EXPORTER_PORT PROM_PORT AM_PORT <<<"$(free_ports 3)"
log "work dir $WORK"
if ((SENTINEL)); then
  read -r -a REDIS_PORTS <<<"$(free_ports 3)"
  read -r -a SENTINEL_PORTS <<<"$(free_ports 3)"
  log "ports: redis ${REDIS_PORTS[*]}, sentinels ${SENTINEL_PORTS[*]}, exporter $EXPORTER_PORT, prometheus $PROM_PORT, alertmanager $AM_PORT"
else
  read -r -a REDIS_PORTS <<<"$(free_ports 6 --cluster)"
  log "ports: redis ${REDIS_PORTS[*]} (bus +10000), exporter $EXPORTER_PORT, prometheus $PROM_PORT, alertmanager $AM_PORT"
fi

# --- 5. Redis Cluster (or Sentinel) ---------------------------------------------

start_sentinel_setup() {
  local master="${REDIS_PORTS[0]}" port dir
  for port in "${REDIS_PORTS[@]}"; do
    dir="$WORK/redis-$port"
    mkdir -p "$dir"
    local replicaof=()
    [ "$port" = "$master" ] || replicaof=(--replicaof 127.0.0.1 "$master")
    start "redis-$port" redis-server \
      --bind 127.0.0.1 --port "$port" --dir "$dir" \
      --save "" --appendonly no --daemonize no --repl-diskless-sync-delay 0 \
      --maxmemory 64mb --maxmemory-policy allkeys-lru --enable-debug-command local \
      "${replicaof[@]}"
  done
  for port in "${REDIS_PORTS[@]}"; do
    wait_for "redis on port $port" 20 redis-cli -h 127.0.0.1 -p "$port" ping
  done
  # Sentinel rewrites its config file: one writable file each.
  for port in "${SENTINEL_PORTS[@]}"; do
    dir="$WORK/sentinel-$port"
    mkdir -p "$dir"
    printf '%s\n' "port $port" "bind 127.0.0.1" "daemonize no" "dir $dir" \
      "sentinel monitor $CLUSTER_NAME 127.0.0.1 $master 2" \
      "sentinel down-after-milliseconds $CLUSTER_NAME 3000" \
      "sentinel failover-timeout $CLUSTER_NAME 10000" >"$dir/sentinel.conf"
    start "sentinel-$port" redis-server "$dir/sentinel.conf" --sentinel
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    wait_for "sentinel on port $port" 20 redis-cli -h 127.0.0.1 -p "$port" ping
  done
}

if ((SENTINEL)); then
  log "starting a master, 2 replicas and 3 Sentinels (master name \"$CLUSTER_NAME\")"
  start_sentinel_setup
else
for port in "${REDIS_PORTS[@]}"; do
  dir="$WORK/redis-$port"
  mkdir -p "$dir"
  # maxmemory makes redis_memory_used_ratio and evictions meaningful;
  # no persistence: it is a cache. DEBUG (from localhost only) lets you
  # simulate a hung node, see the hint printed below.
  start "redis-$port" redis-server \
    --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
    --save "" --appendonly no --daemonize no \
    --maxmemory 64mb --maxmemory-policy allkeys-lru --enable-debug-command local
done
for port in "${REDIS_PORTS[@]}"; do
  wait_for "redis on port $port" 20 redis-cli -h 127.0.0.1 -p "$port" ping
done

log "creating the cluster (3 masters, 3 replicas)"
nodes=()
for port in "${REDIS_PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
  || die "redis-cli --cluster create failed: $(tail -5 "$WORK/cluster-create.log")"

cluster_ok() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$port" cluster info | grep -q '^cluster_state:ok' || return 1
  done
}
wait_for "cluster_state:ok on every node" 60 cluster_ok
fi

# --- 6. Load generator, exporter -----------------------------------------------

# A keyspace of known composition beside the load generator's keys, so that
# the cache report (/insight) has namespaces to show: seven of them, every
# type, one where 30 % of keys lack a TTL (docs/insight.md).
log "writing a 20 000-key dataset (redis-vitals-dataset)"
"$DATASET" --addr "redis://127.0.0.1:${REDIS_PORTS[0]}" --keys 20000 >"$WORK/dataset.json"
# The keyspace analyser is off by default; the demo turns it on with a
# budget ten times the default so that a pass ends within a minute or two
# (it still uses at most 20 ms of Redis time per second per node).
insight=(--insight.enabled --insight.budget 20ms --insight.pass-interval 2m)

if ((SENTINEL)); then
start loadgen "$LOADGEN" --addr "redis://127.0.0.1:${REDIS_PORTS[0]}" \
  --keys 50000 --zipf 0.99 --ttl 2m --value-size 512 \
  --write-ratio 0.05 --del-ratio 0.01 --rate "$RATE" --concurrency 8 --report-interval 10s
# Only the Sentinels: the exporter finds the master and replicas through them.
sentinels=()
for port in "${SENTINEL_PORTS[@]}"; do sentinels+=(--sentinel.addr "127.0.0.1:$port"); done
start exporter "$EXPORTER" "${sentinels[@]}" "${insight[@]}" \
  --web.listen-address "127.0.0.1:$EXPORTER_PORT"
else
seeds=()
for port in "${REDIS_PORTS[@]}"; do seeds+=(--addr "redis://127.0.0.1:$port"); done
start loadgen "$LOADGEN" "${seeds[@]}" --cluster \
  --keys 50000 --zipf 0.99 --ttl 2m --value-size 512 \
  --write-ratio 0.05 --del-ratio 0.01 --rate "$RATE" --concurrency 8 --report-interval 10s

# One seed is enough: the exporter discovers the other five nodes.
start exporter "$EXPORTER" \
  --redis.addr "redis://127.0.0.1:${REDIS_PORTS[0]}" --redis.cluster "$CLUSTER_NAME" \
  "${insight[@]}" --web.listen-address "127.0.0.1:$EXPORTER_PORT"
fi
wait_for "the exporter (/-/ready)" 60 curl -fsS "http://127.0.0.1:$EXPORTER_PORT/-/ready"

# --- 7. Alertmanager, Prometheus -------------------------------------------------

# --cluster.listen-address= turns off Alertmanager's HA gossip, which would
# otherwise listen on every interface.
start alertmanager "$ALERTMANAGER" \
  --config.file "$ROOT/deploy/alertmanager/alertmanager.yml" \
  --storage.path "$WORK/alertmanager" \
  --web.listen-address "127.0.0.1:$AM_PORT" \
  --web.external-url "http://127.0.0.1:$AM_PORT/" \
  --cluster.listen-address=

# Short intervals so that the demo shows data within a minute.
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - "$ROOT/alerts/*.yml"
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$AM_PORT"]
scrape_configs:
  - job_name: redis-vitals
    static_configs:
      - targets: ["127.0.0.1:$EXPORTER_PORT"]
EOF
start prometheus prometheus \
  --config.file "$WORK/prometheus.yml" \
  --storage.tsdb.path "$WORK/prometheus" \
  --web.listen-address "127.0.0.1:$PROM_PORT" \
  --web.external-url "http://127.0.0.1:$PROM_PORT/"
wait_for "Alertmanager" 60 curl -fsS "http://127.0.0.1:$AM_PORT/-/ready"
wait_for "Prometheus" 60 curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready"

# --- 8. Where to look ----------------------------------------------------------------

graph() {
  python3 -c 'import sys, urllib.parse as u; print(sys.argv[1] + "/graph?g0.expr=" + u.quote(sys.argv[2], safe="") + "&g0.tab=0&g0.range_input=15m")' \
    "http://127.0.0.1:$PROM_PORT" "$1"
}

cat <<EOF

redis-vitals demo is running ($( ((SENTINEL)) && echo "Sentinel group" || echo cluster) "$CLUSTER_NAME", ${#REDIS_PORTS[@]} Redis nodes, ~$RATE ops/s of cache-aside load).

  Exporter        http://127.0.0.1:$EXPORTER_PORT/            (node list)
                  http://127.0.0.1:$EXPORTER_PORT/metrics
                  http://127.0.0.1:$EXPORTER_PORT/sd          (Prometheus HTTP SD)
                  http://127.0.0.1:$EXPORTER_PORT/insight     (cache report, after the first pass)
  Prometheus      http://127.0.0.1:$PROM_PORT/targets
                  http://127.0.0.1:$PROM_PORT/rules
                  http://127.0.0.1:$PROM_PORT/alerts
  Alertmanager    http://127.0.0.1:$AM_PORT/

  Ready-made queries (data appears after ~30 s; 5m rates after a few minutes):
    hit ratio per node      $(graph 'redis_keyspace_hit_ratio')
    hit ratio per cluster   $(graph 'cluster:redis_keyspace_hit_ratio:rate5m')
    commands/s per node     $(graph 'sum by (addr) (rate(redis_commands_processed_total[1m]))')
    cluster topology        $(graph 'redis_cluster_node_info')

  Grafana dashboards (import into your Grafana, Prometheus data source above):
    $ROOT/dashboards/*.json

  Try: hang a master for 30 s and watch the failover, the dashboards' data
  and the alerts (RedisDown, RedisMasterLinkDown, ...):
    redis-cli -h 127.0.0.1 -p ${REDIS_PORTS[0]} debug sleep 30

  Logs: $WORK/*.log   (load generator: $WORK/loadgen.log)
EOF
if ((SENTINEL)); then
  cat <<EOF
  Sentinel: Sentinels on ${SENTINEL_PORTS[*]}, master name "$CLUSTER_NAME".
    Sentinel health     $(graph 'redis_sentinel_master_status')
    roles               $(graph 'redis_instance_info{cluster="demo"}')
  Fail over on request, or stop a Sentinel (RedisSentinelDown fires):
    redis-cli -h 127.0.0.1 -p ${SENTINEL_PORTS[0]} sentinel failover $CLUSTER_NAME
    redis-cli -h 127.0.0.1 -p ${SENTINEL_PORTS[2]} shutdown nosave
  (the load generator keeps writing to the first master; after a failover
  it gets READONLY errors, which the dashboards show.)

EOF
fi
if [ -n "$RUN_FOR" ]; then
  log "running for $RUN_FOR, then stopping (Ctrl-C stops sooner)"
else
  log "press Ctrl-C to stop everything"
fi

# --- 9. Run until told to stop -------------------------------------------------------

to_seconds() {
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
end=""
[ -n "$RUN_FOR" ] && end=$((SECONDS + $(to_seconds "$RUN_FOR")))
while :; do
  # sleep in the background + wait: the INT/TERM trap runs at once.
  sleep 1 &
  wait $! || true
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a demo process ($pid) exited unexpectedly; logs in $WORK: $(ls "$WORK"/*.log | tr '\n' ' ')"
  done
  if [ -n "$end" ] && ((SECONDS >= end)); then
    exit 0
  fi
done
