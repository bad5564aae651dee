#!/usr/bin/env bash
# The operator's test of issue 24: PostgreSQL crash-restarted (`pg_ctl stop -m immediate`, then
# started on the same port) under a live projector (v4), the read API under load and a producer,
# none of them restarted by hand. Prints who is connected (pg_stat_activity by
# application_name), then one JSON line: how long the database was down, the reconnections
# each process counted, the API's answers by status during the run, whether every process is
# still running, and v4's verification (diffs) once the producer has stopped and v4 has drained.
#
# Uses its own embedded cluster in DIR (default: a new temporary directory).
# Usage: scripts/faults-restart.sh [path/to/reproject] [DIR]   (default target/release/reproject)
set -euo pipefail
R=$(realpath "${1:-target/release/reproject}")
DIR=${2:-$(mktemp -d /tmp/reproject-faults.XXXXXX)}
EVENTS=${EVENTS:-200000}
RATE=${RATE:-1500}
mkdir -p "$DIR" && chmod 755 "$DIR"
cd "$DIR"
export REPROJECT_DATA_DIR="$DIR/pg"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; "$R" --log warn db stop >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$R" --log warn seed --events "$EVENTS" --aggregates $((EVENTS / 10)) --seed 1 >seed.log
URL=$("$R" --log warn db url)
PGBIN=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | tail -1)}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
metric() { curl -sf "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m"[{]" || $1 == m { s += $2 } END { print s + 0 }'; }

"$R" --database-url "$URL" projector --mode live --projection v4 --progress false \
    --metrics-listen 127.0.0.1:9391 >live.out 2>live.log & PIDS+=($!); LIVE=$!
"$R" --database-url "$URL" api --listen 127.0.0.1:18391 --request-timeout 2s >api.out 2>api.log & PIDS+=($!); API=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18391/metrics >/dev/null && break; sleep 0.1; done
# v4 drains the seeded log before the load starts (the first version of its family: active).
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18391/aggregate/1)" = 200 ] && break; sleep 0.2
done
"$R" --database-url "$URL" produce --rate "$RATE" --writers 2 --metrics-listen 127.0.0.1:9392 \
    >produce.out 2>produce.log & PIDS+=($!); PRODUCE=$!
"$R" --database-url "$URL" load --url http://127.0.0.1:18391 --concurrency 4 --duration 25s --rate 400 \
    --aggregates $((EVENTS / 10)) >load.json 2>load.log & LOAD=$!
sleep 5
echo "connections by name:"
as_pg "$PGBIN/psql" "$URL" -Atc "SELECT application_name, count(*) FROM pg_stat_activity \
    WHERE backend_type = 'client backend' AND application_name <> 'psql' GROUP BY 1 ORDER BY 1"
DOWN=$(date +%s.%N)
as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m immediate -w stop >/dev/null
"$R" --log warn db start >/dev/null
UP=$(date +%s.%N)
wait "$LOAD" || true
PRODUCER_RECONNECTS=$(metric 127.0.0.1:9392 reproject_db_reconnects_total)
kill -INT "$PRODUCE"; wait "$PRODUCE" || true
alive() { kill -0 "$1" 2>/dev/null && echo true || echo false; }
LIVE_ALIVE=$(alive "$LIVE"); API_ALIVE=$(alive "$API")
HEAD=$("$R" --log warn --database-url "$URL" position)
for _ in $(seq 600); do
    LAG=$(as_pg "$PGBIN/psql" "$URL" -Atc "SELECT count(*) - (SELECT sum(events_applied) FROM read.projection_offsets \
        WHERE version = 'v4') FROM log.events")
    [ "$LAG" = 0 ] && break; sleep 0.2
done
DIFFS=$("$R" --log warn --database-url "$URL" verify --projection v4 | awk '/^diffs:/ { print $2 }')
printf '{"down_s":%.2f,"reconnects":{"live":%s,"producer":%s,"api":%s},"live_alive":%s,"api_alive":%s,' \
    "$(echo "$UP - $DOWN" | bc)" "$(metric 127.0.0.1:9391 reproject_db_reconnects_total)" \
    "$PRODUCER_RECONNECTS" "$(metric 127.0.0.1:18391 reproject_db_reconnects_total)" \
    "$LIVE_ALIVE" "$API_ALIVE"
printf '"producer_exit_ok":%s,"lag_after":%s,"v4_diffs":%s,"head":"%s","load":%s}\n' \
    "$(grep -q '^error' produce.log && echo false || echo true)" "$LAG" "${DIFFS:-null}" "$HEAD" "$(tail -1 load.json)"
