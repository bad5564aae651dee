#!/usr/bin/env bash
# One replay process with K workers against K replay processes with one worker each, on the same
# log in one private cluster, taking turns (ABAB...). Prints the bulk phase's wall time and
# events/s per run and the medians.
#
#   scripts/replay-processes.sh [BIN] [EVENTS] [K] [ROUNDS]
set -euo pipefail
bin=${1:-target/release/reproject}
events=${2:-2000000}
k=${3:-2}
rounds=${4:-3}
data=$(mktemp -d /tmp/reproject-processes.XXXXXX)
# The server runs as the postgres user when this runs as root: it must reach the data dir.
chmod 755 "$data"
cleanup() {
    "$bin" --data-dir "$data/pg" db stop >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT
echo "free disk: $(df -h /tmp | awk 'NR==2 {print $4}')" >&2
url=$("$bin" --data-dir "$data/pg" --log warn db url)
"$bin" --log warn seed --database-url "$url" --events "$events" --aggregates $((events / 10)) --seed 42 >/dev/null
reset() {
    psql -q "$url" -v ON_ERROR_STOP=1 -f "$(dirname "$0")/reset-v4.sql"
}
replay() {
    "$bin" --log warn projector --database-url "$url" --mode replay --projection v4 --workers "$1" --progress false
}
echo "layout,round,seconds,events_per_s" >"$data/runs.csv"
for round in $(seq 1 "$rounds"); do
    for layout in one many; do
        reset 2>/dev/null || true
        start=$(date +%s.%N)
        if [ "$layout" = one ]; then
            replay "$k" >/dev/null
        else
            pids=()
            for _ in $(seq 1 "$k"); do
                replay 1 >/dev/null &
                pids+=($!)
            done
            for pid in "${pids[@]}"; do wait "$pid"; done
        fi
        end=$(date +%s.%N)
        python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]},{sys.argv[4]},{s:.2f},{int(sys.argv[5])/s:.0f}')" \
            "$start" "$end" "$layout" "$round" "$events" | tee -a "$data/runs.csv" >&2
    done
done
python3 - "$data/runs.csv" "$k" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
k = sys.argv[2]
one = statistics.median(float(r["events_per_s"]) for r in rows if r["layout"] == "one")
many = statistics.median(float(r["events_per_s"]) for r in rows if r["layout"] == "many")
print(f"1 process x {k} workers: {one:.0f} events/s; {k} processes x 1 worker: {many:.0f} events/s; ratio {many / one:.3f}")
EOF
