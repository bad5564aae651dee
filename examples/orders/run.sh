#!/usr/bin/env bash
# The orders example end to end, as an adopter would run it, on a throwaway embedded cluster:
#
#  1. the app has its own `app_events` table keyed by uuid and writes orders to it;
#  2. reproject adopts the table online (the app's writer keeps inserting) and feeds its log;
#  3. orders_v1 is replayed, tailed and served by uuid over HTTP;
#  4. the app adds an event type v1 does not know (`order_note_added`): nothing stops;
#  5. orders_v2 is replayed beside v1 and cut over under the load driver, rolled back and cut
#     over again, without restarting anything;
#  6. both versions are verified against a fold of the log.
#
# Its last line is one JSON object: failed_reads, diffs_v1, diffs_v2, app_insert_overhead,
# replay_vs_native, rollback_ms (and the independent check's diffs). It exits non-zero if a
# read failed, a version differs from the log or from the SQL fold of the app's table, or the
# rollback took over a second. Scale: HISTORY events of history (default 40k). SHAPE=text runs
# it on the example's other table: text ids, its own column names, versions counted from 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

HISTORY=${HISTORY:-40000}
SHAPE=${SHAPE:-uuid}
PROFILE_DIR=${PROFILE_DIR:-target/debug}
WORK=$(mktemp -d /tmp/reproject-orders.XXXXXX)
# The embedded server runs as `postgres` when this runs as root: it must reach its directory.
chmod 755 "$WORK"
DATA="$WORK/pg"
PORT=${PORT:-18321}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$PROFILE_DIR/orders-reproject" --data-dir "$DATA" db stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*" >&2; }
# Waits up to $1 seconds for the command in the rest of the arguments to succeed.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "timed out waiting for: $*" >&2; return 1; fi
    sleep 0.2
  done
}

say "build (the app's reproject binary and the app)"
cargo build -q -p reproject-example-orders
R="$PROFILE_DIR/orders-reproject"
APPBIN="$PROFILE_DIR/orders-app"

say "a throwaway cluster; the app's database and, to compare with, a native log"
"$R" --data-dir "$DATA" db start >&2
BASE=$("$R" --data-dir "$DATA" db url)
APP_URL="${BASE%/*}/app"
NATIVE_URL="${BASE%/*}/native"
psql -q "$BASE" -c "CREATE DATABASE app" -c "CREATE DATABASE native" >&2
sql() { psql -qtA "$APP_URL" -c "$1"; }
# Conditions the script waits for.
feeding() { [ "$(sql 'SELECT phase FROM log.adoption')" = feed ]; }
noted() { [ "$(sql "SELECT count(*) > 0 FROM log.events WHERE type = 'order_note_added'")" = t ]; }
v2_ready() { [ "$(sql "SELECT state FROM read.projections WHERE version = 'orders_v2'")" = ready ]; }
all_fed() { [ "$(sql "SELECT (SELECT count(*) FROM $TABLE) = (SELECT count(*) FROM log.events)")" = t ]; }
RA=("$R" --database-url "$APP_URL")
RN=("$R" --database-url "$NATIVE_URL")
APP=("$APPBIN" --database-url "$APP_URL" --shape "$SHAPE")
TABLE=$([ "$SHAPE" = uuid ] && echo app_events || echo shop_events)

say "1. the app: its table and $HISTORY events of history (and the same events in a native log)"
"${APP[@]}" setup >&2
"${APP[@]}" write --events "$HISTORY" --batch 2000 --first-order 1 >&2
"${RN[@]}" log create --partitions 8 --id-type "$SHAPE" >&2
"$APPBIN" --database-url "$NATIVE_URL" --shape "$SHAPE" write --events "$HISTORY" --batch 2000 --first-order 1 --native >&2
# The app's own writer from now on; its inserts are timed before and after the adoption.
"${APP[@]}" write --rate 300 --duration 600s --batch 20 --first-order 2000000 >"$WORK/writer.json" &
WRITER=$!
PIDS+=($WRITER)
before=$("${APP[@]}" write --events 10000 --batch 200 --first-order 1000000)
echo "inserts before the adoption: $before" >&2

say "2. adopt the table online, the app's writer running"
"${RA[@]}" adopt --partitions 8 $("${APP[@]}" adopt-flags) >"$WORK/adopt.out" 2>"$WORK/adopt.err" &
PIDS+=($!)
wait_for 120 feeding
after=$("${APP[@]}" write --events 10000 --batch 200 --first-order 3000000)
echo "inserts after the adoption (the feed running): $after" >&2

say "3. replay orders_v1 (and the same on the native log, for the ratio), then tail and serve it"
native=$("${RN[@]}" projector --mode replay --projection orders_v1 --stop-at-head --progress false)
adopted=$("${RA[@]}" projector --mode replay --projection orders_v1 --stop-at-head --progress false)
"${RA[@]}" projector --mode live --projection orders_v1 --progress false 2>"$WORK/v1.err" &
V1=$!
PIDS+=($V1)
openssl rand -hex 32 >"$WORK/token"
"${RA[@]}" api --listen "127.0.0.1:$PORT" --admin-token-file "$WORK/token" >"$WORK/api.out" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$PORT/projections"
first=$(sql "SELECT aggregate_id FROM read.orders_orders_v1 LIMIT 1")
echo "GET /aggregate/$first:" >&2
curl -sf "http://127.0.0.1:$PORT/aggregate/$first" >&2
echo >&2
echo "GET /aggregate/$first/as-of?offset=1000 (time travel by the app's id):" >&2
curl -s "http://127.0.0.1:$PORT/aggregate/$first/as-of?offset=1000" >&2
echo >&2

say "4. the app adds order_note_added, a type v1 does not know"
"${APP[@]}" write --rate 200 --duration 600s --batch 20 --notes --first-order 4000000 >"$WORK/notes.json" &
NOTES=$!
PIDS+=($NOTES)
wait_for 30 noted
sleep 2
kill -0 "$V1" || { echo "the v1 projector stopped on the new type" >&2; exit 1; }

say "5. replay orders_v2 beside v1; cut over under load, roll back, cut over again"
"${RA[@]}" projector --mode replay --projection orders_v2 --catch-up --progress false >"$WORK/v2.out" 2>"$WORK/v2.err" &
PIDS+=($!)
wait_for 180 v2_ready
"${RA[@]}" load --url "http://127.0.0.1:$PORT" --family orders --concurrency 8 --rate 300 --duration 20s \
  --csv "$WORK/load.csv" >"$WORK/load.out" &
LOAD=$!
sleep 4
"${RA[@]}" cutover --projection orders_v2 --wait --timeout 60s >&2
sleep 4
t0=$(date +%s%N)
"${RA[@]}" rollback --family orders --wait --timeout 10s >&2
rollback_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 4
"${RA[@]}" cutover --projection orders_v2 --wait --timeout 60s >&2
wait "$LOAD"
failed=$(tail -1 "$WORK/load.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["failed"])')
grep -E "^ *[0-9]+s " "$WORK/load.out" | awk '{print $NF}' | uniq -c >&2 || true

say "6. the writers stop; both versions verified against a fold of the log"
kill "$WRITER" "$NOTES"
wait "$WRITER" "$NOTES" 2>/dev/null || true
# Every row the app wrote is in the log, and both versions have applied it.
wait_for 60 all_fed
caught_up() {
  "${RA[@]}" projections | awk -v v="$1" '$1 == v { for (i = 1; i <= NF; i++) if ($i ~ /^lag=/) print $i }' | grep -qx "lag=0"
}
wait_for 60 caught_up orders_v1
wait_for 60 caught_up orders_v2
diffs_v1=$("${RA[@]}" verify --projection orders_v1 --against log | awk '/^diffs:/ {print $2}')
diffs_v2=$("${RA[@]}" verify --projection orders_v2 --against log | awk '/^diffs:/ {print $2}')
independent=$("${APP[@]}" check --version orders_v2)
echo "orders_v2 against the SQL fold of the app's table: $independent" >&2
diffs_sql=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['diffs'])" "$independent")

json() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
overhead=$(python3 -c "print(round($(json "$after" mean_batch_ms) / $(json "$before" mean_batch_ms), 3))")
ratio=$(python3 -c "print(round($(json "$adopted" bulk_events_per_s) / $(json "$native" bulk_events_per_s), 3))")
printf '{"shape": "%s", "failed_reads": %s, "diffs_v1": %s, "diffs_v2": %s, "diffs_v2_vs_sql_fold": %s, "app_insert_overhead": %s, "replay_vs_native": %s, "rollback_ms": %s}\n' \
  "$SHAPE" "$failed" "$diffs_v1" "$diffs_v2" "$diffs_sql" "$overhead" "$ratio" "$rollback_ms"
[ "$failed" = 0 ] && [ "$diffs_v1" = 0 ] && [ "$diffs_v2" = 0 ] && [ "$diffs_sql" = 0 ] && [ "$rollback_ms" -le 1000 ]
