#!/usr/bin/env bash
# Persistor throughput benchmark against an nginx reference on the same machine.
#
# Builds Persistor (release), starts it and an nginx that answers 204 to everything, then runs wrk
# (HTTP/1.1) and h2load (HTTP/2 cleartext, prior knowledge) alternately against both for ROUNDS rounds:
#   nginx GET /            reference for            Persistor GET /healthz
#   nginx POST /pubsub     (same Lua script) for     Persistor POST /pubsub (bench/pubsub.lua)
#                          and, per event, for       Persistor POST /eventgrid (bench/eventgrid.lua,
#                                                    batches of 10 events)
#   nginx h2c GET /        reference for            Persistor h2c GET /healthz
#   nginx h2c POST /pubsub (same body file) for     Persistor h2c POST /pubsub
# and prints req/s, latency and the ratio to the nginx reference per round and as medians.
# Afterwards it checks that the archive holds at least every acknowledged (2xx) delivery.
#
# Usage: bench/run.sh            (as root; installs wrk/nginx/curl with apt if missing)
# Knobs: CONNECTIONS (64) DURATION (10, seconds) ROUNDS (3) PAYLOAD_BYTES (1024)
#        PAYLOAD (random: JSON padded with random characters, the default; events: order events
#                 that compress like real JSON)
#        GZIP_LEVEL (archive.gzipLevel for Persistor, 0-9; default: Persistor's default, 6)
#        ONLY (Persistor scenarios to run with their references, e.g. "healthz pubsub"; default all:
#              healthz pubsub eventgrid h2-healthz h2-pubsub)
#        H2_STREAMS (10, concurrent streams per h2load connection)
#        SCRATCH (.build-release, relative to the repo root; never .build)
#        PERSISTOR_BIN (a persistor binary built elsewhere, e.g. of another commit: no build; the
#                       report names the binary instead of the commit)
#        BENCH_TMPDIR (temp parent for nginx prefix and the archive; default $TMPDIR or /tmp)
#        FRESH_FS (1: write the archive to a new ext4 image without a journal, loop-mounted for this
#                  run only, so that inodes deleted by an earlier run cannot slow file creation)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$BENCH_DIR")
LUA_SCRIPT="$BENCH_DIR/pubsub.lua"
EVENTGRID_SCRIPT="$BENCH_DIR/eventgrid.lua"
EVENTS_PER_BATCH=10

CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCRATCH=${SCRATCH:-.build-release}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-1024}
H2_STREAMS=${H2_STREAMS:-10}
BENCH_TMPDIR=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
ONLY=${ONLY:-healthz pubsub eventgrid h2-healthz h2-pubsub}
PAYLOAD=${PAYLOAD:-random}
GZIP_LEVEL=${GZIP_LEVEL:-}
FRESH_FS=${FRESH_FS:-0}
PREBUILT_BIN=${PERSISTOR_BIN:-}
WRK_THREADS=2

# State used by cleanup(); empty until the thing exists.
WORK_DIR=""
NGINX_PID=""
PERSISTOR_PID=""
WRK_PID=""
H2LOAD_PID=""
POLICY_RC_CREATED=""
FS_MOUNT=""

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup: runs on every exit. Stops wrk, Persistor (SIGTERM, wait) and nginx (SIGQUIT to the
# master, wait), escalating to SIGKILL only if they outlive a grace period; removes temp dirs.
# ---------------------------------------------------------------------------------------------

# wait_gone PID SECONDS: poll until PID has exited (true) or SECONDS pass (false).
wait_gone() {
  local pid=$1 tries=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null; do
    ((tries-- > 0)) || return 1
    sleep 0.1
  done
}

stop_persistor() {
  [[ -n $PERSISTOR_PID ]] || return 0
  local pid=$PERSISTOR_PID status=0
  PERSISTOR_PID=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # shutdownGrace defaults to 10 s; give it a little more before forcing.
    if ! wait_gone "$pid" 15; then
      log "persistor did not stop within 15 s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || status=$?
  return "$status"
}

stop_nginx() {
  [[ -n $NGINX_PID ]] || return 0
  local pid=$NGINX_PID workers
  NGINX_PID=""
  workers=$(pgrep -P "$pid" 2>/dev/null || true)
  if kill -0 "$pid" 2>/dev/null; then
    kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 10; then
      log "nginx did not quit within 10 s of SIGQUIT; sending SIGKILL"
      # shellcheck disable=SC2086 # word splitting of the worker pid list is intended
      kill -KILL "$pid" $workers 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT HUP INT PIPE TERM ERR
  if [[ -n $WRK_PID ]]; then
    kill -TERM "$WRK_PID" 2>/dev/null
    wait "$WRK_PID" 2>/dev/null
  fi
  if [[ -n $H2LOAD_PID ]]; then
    kill -TERM "$H2LOAD_PID" 2>/dev/null
    wait "$H2LOAD_PID" 2>/dev/null
  fi
  stop_persistor
  stop_nginx
  [[ -n $FS_MOUNT ]] && umount "$FS_MOUNT"
  [[ -n $POLICY_RC_CREATED ]] && rm -f /usr/sbin/policy-rc.d
  [[ -n $WORK_DIR ]] && rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Setup: knobs, packages, build, servers.
# ---------------------------------------------------------------------------------------------

check_knobs() {
  local name
  for name in CONNECTIONS DURATION ROUNDS PAYLOAD_BYTES H2_STREAMS; do
    [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive integer, got '${!name}'"
  done
  ((CONNECTIONS >= WRK_THREADS)) || die "CONNECTIONS must be at least $WRK_THREADS (wrk threads)"
  [[ $FRESH_FS == 0 || $FRESH_FS == 1 ]] || die "FRESH_FS must be 0 or 1, got '$FRESH_FS'"
  [[ $PAYLOAD == random || $PAYLOAD == events ]] || die "PAYLOAD must be random or events, got '$PAYLOAD'"
  [[ -z $GZIP_LEVEL || $GZIP_LEVEL =~ ^[0-9]$ ]] || die "GZIP_LEVEL must be 0-9, got '$GZIP_LEVEL'"
  # Another developer builds in .build concurrently; sharing it would corrupt both builds.
  local scratch_abs
  scratch_abs=$(cd "$REPO_ROOT" && realpath -m "$SCRATCH")
  [[ $scratch_abs != "$REPO_ROOT/.build" ]] || die "SCRATCH must not be .build (it is in use by other builds)"
}

# Installs wrk, nginx, curl and h2load (nghttp2-client) with apt when missing; apt-get update at most once.
ensure_packages() {
  local pkg missing=()
  for pkg in wrk nginx curl nghttp2-client; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  ((EUID == 0)) || die "missing packages (${missing[*]}); run as root so they can be installed"
  log "installing ${missing[*]}"
  # Keep the nginx package's postinst from starting a system-wide nginx on port 80.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  if [[ -n $POLICY_RC_CREATED ]]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=""
  fi
}

build_persistor() {
  if [[ -n $PREBUILT_BIN ]]; then
    [[ -x $PREBUILT_BIN ]] || die "PERSISTOR_BIN=$PREBUILT_BIN is not an executable"
    PERSISTOR_BIN=$(realpath "$PREBUILT_BIN")
    log "using the prebuilt $PERSISTOR_BIN"
    return
  fi
  log "building release (scratch path $SCRATCH)"
  if ! (cd "$REPO_ROOT" && swift build -c release --scratch-path "$SCRATCH") >"$WORK_DIR/build.log" 2>&1; then
    tail -n 40 "$WORK_DIR/build.log" >&2
    die "swift build failed"
  fi
  PERSISTOR_BIN=$(cd "$REPO_ROOT" && realpath "$SCRATCH/release/persistor")
  [[ -x $PERSISTOR_BIN ]] || die "no binary at $PERSISTOR_BIN"
}

# Prints a loopback TCP port nobody is listening on (a connect attempt is refused).
free_port() {
  local port tries
  for ((tries = 0; tries < 200; tries++)); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "no free loopback port found"
}

# wait_ready NAME PID URL LOGFILE: wait until URL answers 2xx while PID is still alive.
wait_ready() {
  local name=$1 pid=$2 url=$3 logfile=$4 tries=100
  while ! curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "$name (pid $pid) exited during start-up"
    fi
    ((tries-- > 0)) || die "$name did not answer $url within 10 s"
    sleep 0.1
  done
  # Something answered; make sure it is still our process (not a leftover holding the port).
  sleep 0.2
  kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logfile" >&2 || true; die "$name (pid $pid) exited after start-up (port taken?)"; }
}

start_nginx() {
  local prefix="$WORK_DIR/nginx"
  NGINX_PORT=$(free_port)
  NGINX_H2_PORT=$(free_port)
  mkdir -p "$prefix"
  cat >"$prefix/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 204; }
    }
    server {
        listen 127.0.0.1:$NGINX_H2_PORT http2;
        http2_max_requests 1000000;
        location / { return 204; }
    }
}
EOF
  # A simple command, so $! is nginx's master itself (not a subshell).
  nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" >"$prefix/stdout.log" 2>&1 &
  NGINX_PID=$!
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx failed to start"
  wait_ready nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/" "$prefix/error.log"
}

# FRESH_FS=1: a sparse ext4 image in the work dir (removed with it), formatted like this VM's root
# filesystem (no journal) and mounted for this run; the archive goes there.
mount_fresh_fs() {
  ((EUID == 0)) || die "FRESH_FS=1 needs root (mount)"
  command -v mkfs.ext4 >/dev/null || die "FRESH_FS=1 needs mkfs.ext4 (e2fsprogs)"
  truncate -s 16G "$WORK_DIR/store.img"
  mkfs.ext4 -q -O ^has_journal "$WORK_DIR/store.img"
  mkdir "$WORK_DIR/store"
  mount -o loop "$WORK_DIR/store.img" "$WORK_DIR/store" || die "could not loop-mount $WORK_DIR/store.img"
  FS_MOUNT="$WORK_DIR/store"
}

start_persistor() {
  PERSISTOR_PORT=$(free_port)
  STORE_DIR="${FS_MOUNT:-$WORK_DIR}/data"
  PERSISTOR_LOG="$WORK_DIR/persistor.log"
  mkdir -p "$STORE_DIR"
  local config=()
  if [[ -n $GZIP_LEVEL ]]; then
    printf 'archive:\n  gzipLevel: %s\n' "$GZIP_LEVEL" >"$WORK_DIR/persistor.yaml"
    config=(--config "$WORK_DIR/persistor.yaml")
  fi
  "$PERSISTOR_BIN" serve --host 127.0.0.1 --port "$PERSISTOR_PORT" --store "$STORE_DIR" "${config[@]}" \
    --log-level warning >"$PERSISTOR_LOG" 2>&1 &
  PERSISTOR_PID=$!
  kill -0 "$PERSISTOR_PID" 2>/dev/null || die "persistor failed to start"
  wait_ready persistor "$PERSISTOR_PID" "http://127.0.0.1:$PERSISTOR_PORT/healthz" "$PERSISTOR_LOG"
}

# ---------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------

# cpu_ticks PID: utime+stime of PID and its direct children (nginx workers), in clock ticks.
cpu_ticks() {
  local pid total=0 stat fields
  for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # Field 2 (comm) may contain spaces; parse from after its closing parenthesis.
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  printf '%s\n' "$total"
}

# children_ticks: CPU of this shell's finished children (wrk, once it is waited for), in clock ticks.
children_ticks() {
  local stat fields
  stat=$(cat "/proc/$$/stat")
  read -r -a fields <<<"${stat##*) }"
  printf '%s\n' $((fields[13] + fields[14]))
}

# wrk_value FILE KEY: extract one number from wrk's output. Latencies are converted to ms.
wrk_value() {
  local file=$1 key=$2
  case $key in
    rps) awk '/^Requests\/sec:/ { print $2 }' "$file" ;;
    requests) awk '/ requests in / { print $1 }' "$file" ;;
    non2xx) awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$file" ;;
    sockerr) awk -F': ' '/Socket errors:/ { s = $2 } END { print (s == "" ? "none" : s) }' "$file" ;;
    p50 | p99)
      awk -v pct="${key#p}%" '
        $1 == pct {
          v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
          f = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : (unit == "m") ? 60000 : -1
          printf "%.2f\n", (f < 0 ? -1 : v * f)
        }' "$file"
      ;;
  esac
}

# Results, keyed "round:scenario:field".
declare -A RESULT
ACKED_TOTAL=0 # records acknowledged by Persistor (2xx answers × events per delivery) over all rounds

# run_scenario ROUND SCENARIO PID URL [LUA]: one wrk run; records req/s, p50, p99, errors, CPU.
run_scenario() {
  local round=$1 scenario=$2 pid=$3 url=$4 lua=${5:-}
  local out="$WORK_DIR/wrk-r$round-$scenario.txt" args=() cpu0 cpu1 client0 client1
  kill -0 "$pid" 2>/dev/null || die "$scenario: server (pid $pid) is not running"
  args=(-t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  log "round $round/$ROUNDS: $scenario (${DURATION}s, $CONNECTIONS connections)"
  cpu0=$(cpu_ticks "$pid")
  client0=$(children_ticks)
  # In the background so a signal reaches cleanup() at once; wrk is stopped there.
  BENCH_RUN_TAG="r$round-$RUN_ID" PAYLOAD_BYTES=$PAYLOAD_BYTES PAYLOAD=$PAYLOAD EVENTS=$EVENTS_PER_BATCH wrk "${args[@]}" "$url" >"$out" 2>&1 &
  WRK_PID=$!
  if ! wait "$WRK_PID"; then
    WRK_PID=""
    cat "$out" >&2
    die "wrk failed for $scenario"
  fi
  WRK_PID=""
  client1=$(children_ticks)
  cpu1=$(cpu_ticks "$pid")
  kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$scenario: server (pid $pid) died during the run"; }

  local key="$round:$scenario" field
  for field in rps requests p50 p99 non2xx sockerr; do
    RESULT[$key:$field]=$(wrk_value "$out" "$field")
  done
  [[ -n ${RESULT[$key:rps]} ]] || { cat "$out" >&2; die "could not parse wrk output for $scenario"; }
  RESULT[$key:cpu]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')
  # CPU per request, in µs, of the server and of wrk (per delivery: one request of 10 events
  # for Event Grid).
  RESULT[$key:srvus]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="${RESULT[$key:requests]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  RESULT[$key:wrkus]=$(awk -v t=$((client1 - client0)) -v hz="$CLK_TCK" -v n="${RESULT[$key:requests]}" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  local body
  body=$(awk -F'body_bytes=' '/^pubsub.lua:/ { print $2 }' "$out")
  [[ -n $body ]] && BODY_BYTES=$body
  body=$(awk -F'body_bytes=' '/^eventgrid.lua:/ { print $2 }' "$out")
  [[ -n $body ]] && EVENTGRID_BODY_BYTES=$body
  case $scenario in
    persistor-pubsub) ACKED_TOTAL=$((ACKED_TOTAL + ${RESULT[$key:requests]} - ${RESULT[$key:non2xx]})) ;;
    persistor-eventgrid)
      ACKED_TOTAL=$((ACKED_TOTAL + (${RESULT[$key:requests]} - ${RESULT[$key:non2xx]}) * EVENTS_PER_BATCH))
      # Per event, against nginx's rate for single 1 KiB posts (the bar is the same per event).
      RESULT[$key:rps]=$(awk -v r="${RESULT[$key:rps]}" -v n="$EVENTS_PER_BATCH" 'BEGIN { printf "%.2f", r * n }')
      ;;
  esac
  return 0
}

# h2load_value FILE KEY: extract one number from h2load's output (latency: mean, in ms).
h2load_value() {
  local file=$1 key=$2
  case $key in
    rps) awk '/^finished in/ { print $4 }' "$file" ;;
    requests) awk '/^requests:/ { print $6 }' "$file" ;;
    ok) awk '/^status codes:/ { print $3 }' "$file" ;;
    errors) awk '/^requests:/ { e = $10 + $12 + $14 } END { print (e > 0 ? e " failed/errored/timeout" : "none") }' "$file" ;;
    mean)
      awk '/^time for request:/ {
          v = $6; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
          f = (unit == "us") ? 0.001 : (unit == "ms") ? 1 : (unit == "s") ? 1000 : -1
          printf "%.2f\n", (f < 0 ? -1 : v * f)
        }' "$file"
      ;;
  esac
}

# run_h2_scenario ROUND SCENARIO PID URL [BODY_FILE]: one h2load run (h2c, prior knowledge) with
# CONNECTIONS clients × H2_STREAMS streams; records the same fields as run_scenario (latency is
# h2load's mean, shown in the p50 column; h2load reports no percentiles).
run_h2_scenario() {
  local round=$1 scenario=$2 pid=$3 url=$4 body=${5:-}
  local out="$WORK_DIR/h2load-r$round-$scenario.txt" args=() cpu0 cpu1
  kill -0 "$pid" 2>/dev/null || die "$scenario: server (pid $pid) is not running"
  args=(-t"$WRK_THREADS" -c"$CONNECTIONS" -m"$H2_STREAMS" -D"$DURATION")
  [[ -n $body ]] && args+=(-d "$body" -H "content-type: application/json")
  log "round $round/$ROUNDS: $scenario (${DURATION}s, $CONNECTIONS connections × $H2_STREAMS streams)"
  cpu0=$(cpu_ticks "$pid")
  h2load "${args[@]}" "$url" >"$out" 2>&1 &
  H2LOAD_PID=$!
  if ! wait "$H2LOAD_PID"; then
    H2LOAD_PID=""
    cat "$out" >&2
    die "h2load failed for $scenario"
  fi
  H2LOAD_PID=""
  cpu1=$(cpu_ticks "$pid")
  kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$scenario: server (pid $pid) died during the run"; }

  local key="$round:$scenario" completed ok
  RESULT[$key:rps]=$(h2load_value "$out" rps)
  [[ -n ${RESULT[$key:rps]} ]] || { cat "$out" >&2; die "could not parse h2load output for $scenario"; }
  completed=$(h2load_value "$out" requests)
  ok=$(h2load_value "$out" ok)
  RESULT[$key:requests]=$completed
  RESULT[$key:p50]=$(h2load_value "$out" mean)
  RESULT[$key:p99]="-"
  RESULT[$key:non2xx]=$((completed - ok))
  RESULT[$key:sockerr]=$(h2load_value "$out" errors)
  RESULT[$key:cpu]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz }')
  if [[ $scenario == persistor-h2-pubsub ]]; then
    ACKED_TOTAL=$((ACKED_TOTAL + ok))
  fi
  return 0
}

# The body h2load posts (one file, so every h2c delivery carries the same messageId).
write_h2_body() {
  H2_BODY="$WORK_DIR/h2-body.json"
  local data
  data=$(head -c "$PAYLOAD_BYTES" /dev/urandom | base64 -w0)
  printf '{"message":{"attributes":{"bench":"h2load"},"data":"%s","messageId":"h2load-%s","publishTime":"2021-02-26T19:13:55.749Z"},"subscription":"projects/persistor-bench/subscriptions/bench-h2"}' \
    "$data" "$RUN_ID" >"$H2_BODY"
}

# Archive check: objects and records now in the store. Fails when nothing was archived, when
# fewer records than acknowledged deliveries are there (a 204 must mean durable), or when records
# were quarantined as unparsed (the benchmark would be measuring the wrong path). Duplicate ids
# are reported only: wrk never resends, so beyond the h2load deliveries (which all repeat one body
# and so one id) they would point at the archiver.
verify_archive() {
  local when=$1 objects counts records=0 unparsed=0 duplicates=0
  objects=$(find "$STORE_DIR" -type f -name '*.ndjson.gz' | wc -l)
  if ((objects > 0)); then
    # Records start {"id":"…", so the id is the text up to the next quote.
    counts=$(find "$STORE_DIR" -type f -name '*.ndjson.gz' -print0 | xargs -0 zcat | awk '
        { n++ }
        index($0, "\"source\":\"unparsed\"") { u++ }
        /^\{"id":"/ { id = substr($0, 8); sub(/".*/, "", id); if (seen[id]++) d++ }
        END { print n + 0, u + 0, d + 0 }') || die "cannot read the archive objects (corrupt gzip?)"
    read -r records unparsed duplicates <<<"$counts"
  fi
  printf 'archived %d records in %d objects (%s; %d deliveries acknowledged so far; %d unparsed, %d duplicate ids)\n' \
    "$records" "$objects" "$when" "$ACKED_TOTAL" "$unparsed" "$duplicates"
  ((records > 0 || ACKED_TOTAL == 0 && !POSTS)) || die "the benchmark archived nothing"
  ((records >= ACKED_TOTAL)) || die "archive holds $records records but $ACKED_TOTAL deliveries were acknowledged"
  ((unparsed == 0)) || die "$unparsed records were quarantined as unparsed; check bench/pubsub.lua against the decoder"
}

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------

# Reference scenario for each Persistor scenario (the ratio's denominator).
declare -A REFERENCE=([persistor-healthz]=nginx-get [persistor-pubsub]=nginx-post
  [persistor-eventgrid]=nginx-post [persistor-h2-healthz]=nginx-h2-get [persistor-h2-pubsub]=nginx-h2-post)
SCENARIOS=() # filled by select_scenarios from ONLY

# wants NAME: NAME (healthz, pubsub, eventgrid, h2-healthz, h2-pubsub) is in ONLY.
wants() { [[ " $ONLY " == *" $1 "* ]]; }

select_scenarios() {
  local name
  for name in $ONLY; do
    [[ -n ${REFERENCE[persistor-$name]:-} ]] || die "ONLY: unknown scenario '$name' (healthz pubsub eventgrid h2-healthz h2-pubsub)"
  done
  wants healthz && SCENARIOS+=(nginx-get persistor-healthz)
  if wants pubsub || wants eventgrid; then SCENARIOS+=(nginx-post); fi
  wants pubsub && SCENARIOS+=(persistor-pubsub)
  wants eventgrid && SCENARIOS+=(persistor-eventgrid)
  wants h2-healthz && SCENARIOS+=(nginx-h2-get persistor-h2-healthz)
  wants h2-pubsub && SCENARIOS+=(nginx-h2-post persistor-h2-pubsub)
  if wants pubsub || wants eventgrid || wants h2-pubsub; then POSTS=1; else POSTS=0; fi
  return 0
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ROW_FORMAT='%-6s %-18s %10s %9s %9s %7s %8s %8s  %s\n'

print_row() { # round scenario rps p50 p99 ratio cpu non2xx sockerr
  # shellcheck disable=SC2059 # the format string is a fixed constant
  printf "$ROW_FORMAT" "$@"
}

print_report() {
  local round scenario key ref vs field
  echo
  echo "== Persistor vs nginx (wrk -t$WRK_THREADS -c$CONNECTIONS -d${DURATION}s --latency; h2load -t$WRK_THREADS -c$CONNECTIONS -m$H2_STREAMS -D$DURATION; $ROUNDS rounds) =="
  echo "machine: $(nproc) cpus, $CPU_MODEL, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "persistor: commit $COMMIT, swift $SWIFT_VERSION; $NGINX_VERSION; wrk $WRK_VERSION; $H2LOAD_VERSION"
  echo "h2 rows: the p50 column is h2load's mean latency (it reports no percentiles)"
  echo "store: $STORE_FS; pubsub body ${BODY_BYTES:-?} bytes (message.data = base64 of $PAYLOAD_BYTES bytes); PAYLOAD=$PAYLOAD; gzip level ${GZIP_LEVEL:-6 (default)}"
  echo "eventgrid: $EVENTS_PER_BATCH events of $PAYLOAD_BYTES data bytes per delivery (${EVENTGRID_BODY_BYTES:-?} bytes); its req/s column counts events, its reference is nginx-post"
  echo
  print_row round scenario req/s "p50 ms" "p99 ms" "vs ref" "srv cpu" non-2xx "socket errors"
  for ((round = 1; round <= ROUNDS; round++)); do
    for scenario in "${SCENARIOS[@]}"; do
      key="$round:$scenario"
      ref=${REFERENCE[$scenario]:-}
      vs="-"
      if [[ -n $ref ]]; then
        vs=$(ratio "${RESULT[$key:rps]}" "${RESULT[$round:$ref:rps]}")
        RESULT[$key:ratio]=$vs
      fi
      print_row "$round" "$scenario" "${RESULT[$key:rps]}" "${RESULT[$key:p50]}" "${RESULT[$key:p99]}" \
        "$vs" "${RESULT[$key:cpu]}s" "${RESULT[$key:non2xx]}" "${RESULT[$key:sockerr]}"
    done
  done
  for scenario in "${SCENARIOS[@]}"; do
    local -a values=()
    local med_rps med_p50 med_p99="-" med_ratio="-" med_cpu non2xx=0
    for field in rps p50 p99 cpu ratio; do
      values=()
      for ((round = 1; round <= ROUNDS; round++)); do
        [[ -n ${RESULT[$round:$scenario:$field]:-} && ${RESULT[$round:$scenario:$field]} != "-" ]] &&
          values+=("${RESULT[$round:$scenario:$field]}")
      done
      ((${#values[@]} > 0)) || continue
      case $field in
        rps) med_rps=$(median "${values[@]}") ;;
        p50) med_p50=$(median "${values[@]}") ;;
        p99) med_p99=$(median "${values[@]}") ;;
        cpu) med_cpu=$(median "${values[@]}") ;;
        ratio) med_ratio=$(median "${values[@]}") ;;
      esac
    done
    for ((round = 1; round <= ROUNDS; round++)); do
      non2xx=$((non2xx + ${RESULT[$round:$scenario:non2xx]}))
    done
    print_row median "$scenario" "$med_rps" "$med_p50" "$med_p99" "$med_ratio" "${med_cpu}s" "$non2xx" ""
  done
  print_cpu_budget
  echo
}

# median_of SCENARIO FIELD: the median of a field over the rounds.
median_of() {
  local -a values=()
  local round
  for ((round = 1; round <= ROUNDS; round++)); do values+=("${RESULT[$round:$1:$2]}"); done
  median "${values[@]}"
}

# The durable targets are 0.5x nginx-post (per event for Event Grid). wrk shares the machine, so
# at that rate the server may use at most what wrk leaves of the CPUs; this prints that budget per
# request (wrk's cost per request measured against nginx-post, or per Event Grid delivery against
# Persistor) next to what Persistor used.
print_cpu_budget() {
  wants pubsub || wants eventgrid || return 0
  local cpus rate wrk_us srv_us
  cpus=$(nproc)
  rate=$(awk -v r="$(median_of nginx-post rps)" 'BEGIN { printf "%.0f", r / 2 }')
  echo
  echo "CPU per request at the durable target (0.5x nginx-post = $rate req/s, $cpus cpus shared with wrk; medians):"
  if wants pubsub; then
    wrk_us=$(median_of nginx-post wrkus)
    srv_us=$(median_of persistor-pubsub srvus)
    awk -v c="$cpus" -v r="$rate" -v w="$wrk_us" -v s="$srv_us" 'BEGIN {
      printf "  pubsub:    wrk %.1f us/request, leaving %.1f us/request for the server; persistor used %.1f\n", w, (c * 1e6 - r * w) / r, s }'
  fi
  if wants eventgrid; then
    wrk_us=$(median_of persistor-eventgrid wrkus)
    srv_us=$(median_of persistor-eventgrid srvus)
    awk -v c="$cpus" -v r="$rate" -v w="$wrk_us" -v s="$srv_us" -v n="$EVENTS_PER_BATCH" 'BEGIN {
      d = r / n
      printf "  eventgrid: wrk %.1f us/delivery, leaving %.1f us/delivery of %d events for the server; persistor used %.1f\n", w, (c * 1e6 - d * w) / d, n, s }'
  fi
}

# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------

main() {
  check_knobs
  select_scenarios
  ensure_packages
  command -v swift >/dev/null || die "swift is not on PATH"

  WORK_DIR=$(mktemp -d "$BENCH_TMPDIR/persistor-bench.XXXXXX")
  RUN_ID=$(date +%s)
  CLK_TCK=$(getconf CLK_TCK)
  CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  COMMIT=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ $COMMIT != unknown ]] && ! git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null; then
    COMMIT="$COMMIT (+uncommitted changes)"
  fi
  [[ -z $PREBUILT_BIN ]] || COMMIT="prebuilt binary $PREBUILT_BIN (tree at $COMMIT)"
  SWIFT_VERSION=$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([^ ]*\).*/\1/p' | head -n 1)
  NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //')
  WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $2 }') # wrk -v exits 1
  H2LOAD_VERSION=$(h2load --version 2>&1 | head -n 1)
  STORE_FS=$(stat -f -c %T "$WORK_DIR")
  [[ $STORE_FS != tmpfs ]] || log "WARNING: $WORK_DIR is on tmpfs; fsync is free there, set BENCH_TMPDIR to a disk"
  if ((FRESH_FS)); then
    mount_fresh_fs
    STORE_FS="fresh ext4 image without a journal, loop-mounted, on the $STORE_FS filesystem under $BENCH_TMPDIR"
  else
    STORE_FS="$STORE_FS filesystem under $BENCH_TMPDIR"
  fi

  build_persistor
  start_nginx
  start_persistor
  write_h2_body
  log "nginx pid $NGINX_PID on :$NGINX_PORT (h2c :$NGINX_H2_PORT), persistor pid $PERSISTOR_PID on :$PERSISTOR_PORT"

  local round
  for ((round = 1; round <= ROUNDS; round++)); do
    if wants healthz; then
      run_scenario "$round" nginx-get "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/"
      run_scenario "$round" persistor-healthz "$PERSISTOR_PID" "http://127.0.0.1:$PERSISTOR_PORT/healthz"
    fi
    if wants pubsub || wants eventgrid; then
      run_scenario "$round" nginx-post "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/pubsub" "$LUA_SCRIPT"
    fi
    if wants pubsub; then
      run_scenario "$round" persistor-pubsub "$PERSISTOR_PID" "http://127.0.0.1:$PERSISTOR_PORT/pubsub" "$LUA_SCRIPT"
    fi
    if wants eventgrid; then
      run_scenario "$round" persistor-eventgrid "$PERSISTOR_PID" \
        "http://127.0.0.1:$PERSISTOR_PORT/eventgrid" "$EVENTGRID_SCRIPT"
    fi
    if wants h2-healthz; then
      run_h2_scenario "$round" nginx-h2-get "$NGINX_PID" "http://127.0.0.1:$NGINX_H2_PORT/"
      run_h2_scenario "$round" persistor-h2-healthz "$PERSISTOR_PID" "http://127.0.0.1:$PERSISTOR_PORT/healthz"
    fi
    if wants h2-pubsub; then
      run_h2_scenario "$round" nginx-h2-post "$NGINX_PID" "http://127.0.0.1:$NGINX_H2_PORT/pubsub" "$H2_BODY"
      run_h2_scenario "$round" persistor-h2-pubsub "$PERSISTOR_PID" "http://127.0.0.1:$PERSISTOR_PORT/pubsub" "$H2_BODY"
    fi
    verify_archive "after round $round" >&2
  done

  print_report

  # Graceful stop, then count again: every acknowledged delivery must be in a finished object.
  local status=0
  stop_persistor || status=$?
  ((status == 0)) || log "WARNING: persistor exited with status $status after SIGTERM (unclean shutdown)"
  verify_archive "after shutdown"
  # Start-up always warns once per unauthenticated route; anything else is worth a look.
  local complaints
  complaints=$(grep -v 'route accepts unauthenticated deliveries' "$PERSISTOR_LOG" | grep -c -E 'warning|error|critical' || true)
  echo "persistor log: $complaints warning/error lines besides the start-up 'unauthenticated route' warnings"
  if ((complaints > 0)); then
    grep -v 'route accepts unauthenticated deliveries' "$PERSISTOR_LOG" | grep -E 'warning|error|critical' |
      sed 's/^[^ ]* //' | sort | uniq -c | sort -rn | head -n 10
  fi
  ((status == 0)) || exit 1
}

main "$@"
