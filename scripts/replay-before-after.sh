#!/usr/bin/env bash
# The replay's speed before and after a change, in one run: two `reproject` binaries (built
# from two commits) take turns running `bench replay` on the same log in the same private
# cluster, ABAB..., so a drift of the machine falls on both. Prints one line per run and the
# ratio of the medians (after / before) of replay events/s and of replay/scan.
#
#   scripts/replay-before-after.sh BEFORE_BIN AFTER_BIN [EVENTS] [ROUNDS]
#
# Build the "before" binary from a worktree of the old commit with its own target dir, e.g.
#   git worktree add /tmp/before <commit> && (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release)
# With SEPARATE_DATABASES=1 each binary seeds and replays its own database of the one cluster
# (the same seed: the same log), for builds whose read schemas differ (the stream-id change
# moved the bookkeeping tables' ids to text).
set -euo pipefail
before=${1:?before binary}
after=${2:?after binary}
events=${3:-2000000}
rounds=${4:-3}
data=$(mktemp -d /tmp/reproject-before-after.XXXXXX)
# The server runs as the postgres user when this runs as root: it must reach the data dir.
chmod 755 "$data"
out=${OUT:-results/before_after}
mkdir -p "$out"
csv="$out/replay_before_after.csv"
cleanup() {
    "$after" --data-dir "$data/pg" db stop >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT
echo "free disk: $(df -h /tmp | awk 'NR==2 {print $4}')" >&2
url=$("$after" --data-dir "$data/pg" --log warn db url)
before_url=$url
if [ "${SEPARATE_DATABASES:-0}" = 1 ]; then
    before_url="${url%/*}/reproject_before"
    psql -q "$url" -c "CREATE DATABASE reproject_before"
fi
echo "binary,round,events,scan_events_per_s,replay_events_per_s,replay_vs_scan" >"$csv"
for round in $(seq 1 "$rounds"); do
    for which in before after; do
        bin=$before
        db=$before_url
        [ "$which" = after ] && bin=$after && db=$url
        line=$("$bin" --log warn bench replay --database-url "$db" --events "$events" --aggregates $((events / 10)) \
            --naive-events 1000 --naive-time 1s --out "$data/out" | tail -1)
        echo "$line" | jq -r --arg w "$which" --arg r "$round" \
            '[$w, $r, .events, (.scan_events_per_s|floor), (.replay_events_per_s|floor), .replay_vs_scan] | @csv' |
            tr -d '"' >>"$csv"
        tail -1 "$csv" >&2
    done
done
python3 - "$csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(which, key):
    return statistics.median(float(r[key]) for r in rows if r["binary"] == which)
for key in ["replay_events_per_s", "replay_vs_scan"]:
    b, a = med("before", key), med("after", key)
    print(f"{key}: before {b:.3f}  after {a:.3f}  after/before {a / b:.3f}")
print(f"runs: {len(rows)} ({sys.argv[1]})")
EOF
