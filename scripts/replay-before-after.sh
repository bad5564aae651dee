#!/usr/bin/env bash
# The bigint replay of two builds, on one cluster, the same log (seed 42), alternating runs:
# OLD (e.g. a build of 73511de in its own target dir) and NEW. Usage:
#   OLD=/path/to/old/reproject NEW=target/release/reproject scripts/replay-before-after.sh
# Figures: each run's bench replay JSON line, prefixed old/new and the round.

set -euo pipefail
cd "$(dirname "$0")/.."
NEW=${NEW:-target/release/reproject}
OLD=${OLD:?the old build to compare with}
BASE=$($NEW db url)
psql -q "$BASE" -c "DROP DATABASE IF EXISTS reproject_old WITH (FORCE)" -c "CREATE DATABASE reproject_old" 2>/dev/null || true
OLDURL="${BASE%/*}/reproject_old"
for round in 1 2 3; do
  $OLD --database-url "$OLDURL" bench replay --events 10000000 --aggregates 1000000 --naive-time 1s --naive-events 2000 --out results/old 2>/dev/null | tail -1 | sed "s/^/old $round /"
  $NEW bench replay --events 10000000 --aggregates 1000000 --naive-time 1s --naive-events 2000 --out results/new 2>/dev/null | tail -1 | sed "s/^/new $round /"
done
