#!/usr/bin/env bash
# Does CPU priority isolate live reads from other work on this machine?
#
# Serves the read API (the active version of the embedded cluster, as `bench isolation` leaves
# it: run that, or `reproject demo`, first) and drives the same live load (500 reads/s, 8
# readers, 20 s) beside busy loops that do no I/O and touch no memory to speak of:
#   none          nothing else running
#   nice19_x2     two busy loops at nice 19
#   idle_x2       two busy loops in the SCHED_IDLE class
#   pinned_idle   the API, the load and every PostgreSQL process pinned to CPU 0, one SCHED_IDLE
#                 busy loop pinned to CPU 1 (nothing of the live path ever runs beside it)
# If the scheduler isolated the live path, every line would read like `none`. Prints
# `condition p50_ms p99_ms requests failed`, CYCLES times over (default 2), interleaved.
#
# Usage: scripts/cpu-interference.sh [path/to/reproject]   (default target/release/reproject)
set -euo pipefail
R=${1:-target/release/reproject}
CYCLES=${CYCLES:-2}
PORT=${PORT:-8097}
URL=$("$R" --log warn db url)
"$R" --log warn --database-url "$URL" api --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
API=$!
SPIN=()
cleanup() { kill "${SPIN[@]}" "$API" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null && break; sleep 0.1; done
PM=$(head -1 "${REPROJECT_DATA_DIR:-.reproject/pg}/postmaster.pid")
# The embedded cluster's postmaster and every process it forked (backends come and go).
live_cpus() { for p in "$PM" $(pgrep -P "$PM") "$API"; do taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || true; done; }
spin() { "$@" sh -c 'while :; do :; done' & SPIN+=($!); }
run() {
  local name=$1 load=()
  case $name in
    none) ;;
    nice19_x2) spin nice -n 19; spin nice -n 19 ;;
    idle_x2) spin chrt -i 0; spin chrt -i 0 ;;
    pinned_idle) live_cpus 0; load=(taskset -c 0); spin taskset -c 1 chrt -i 0 ;;
  esac
  local out
  out=$("${load[@]}" "$R" --log warn load --url "http://127.0.0.1:$PORT" --concurrency 8 --duration 20s \
    --rate 500 --aggregates 1000000 --csv "/tmp/cpu-interference-$name.csv" | tail -1)
  kill "${SPIN[@]}" 2>/dev/null || true
  SPIN=()
  live_cpus "0-$(($(nproc) - 1))"
  echo "$name $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["p50_ms"], d["p99_ms"], d["requests"], d["failed"])' "$out")"
}
# Warm-up, not reported: the API's connections and the read path's caches.
"$R" --log warn load --url "http://127.0.0.1:$PORT" --concurrency 8 --duration 10s --rate 500 --aggregates 1000000 \
  --csv /tmp/cpu-interference-warmup.csv >/dev/null
echo "condition p50_ms p99_ms requests failed"
for _ in $(seq "$CYCLES"); do
  for c in none nice19_x2 idle_x2 pinned_idle; do run "$c"; done
done
