#!/usr/bin/env bash
# The replay across hosts: PostgreSQL in the root network namespace, each replay process in a
# namespace of its own joined to it by a veth pair (its own link, addresses and TCP stack), so
# every byte of the bulk COPY, every claim and every commit crosses a real (virtual) network.
#
#   sudo scripts/replay-hosts.sh [BIN] [EVENTS] [ROUNDS]
#
# 1. Throughput: 1, 2 and 3 replay processes (one worker each, one per namespace) rebuild v4
#    from the same log, at 0, 0.5 and 5 ms of round-trip time. This kernel has no sch_netem,
#    so the latency is added by scripts/delay_relay.py in each worker's namespace (its CPU is
#    on the same two cores as everything else).
# 2. A network partition: worker 1 (rate-limited, so it is mid-partition) loses its link
#    (`ip link set ... down`, not a kill). The server notices with its TCP settings
#    (tcp_user_timeout 3 s, keepalives every second), ends the session and its partition lock;
#    worker 2 takes the partition over. When the link comes back, worker 1 must write nothing
#    after its successor: its lock and its writes are one session, which is gone.
#    Measured: partition_takeover_s (link down -> the partition's lock held by worker 2),
#    zombie_writes (rows or positions of that partition changed after worker 2 committed it),
#    diffs (v4 against the true state at the end).
#
# RTTS="0 5" picks the round-trip times of part 1 (RTTS= skips it).
# Prints one JSON line at the end; writes runs.csv beside it in $OUT (default: a temp dir,
# printed).
set -euo pipefail
bin=$(realpath "${1:-target/release/reproject}")
events=${2:-2000000}
rounds=${3:-1}
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$(mktemp -d /tmp/reproject-hosts.XXXXXX)}
data=$(mktemp -d /tmp/reproject-hosts-pg.XXXXXX)
chmod 755 "$data"
mkdir -p "$out"
net=10.77
workers=3
pids=()

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for i in $(seq 1 $workers); do
        ip netns del "rp-w$i" 2>/dev/null || true
        ip link del "rpv$i" 2>/dev/null || true
    done
    "$bin" --data-dir "$data/pg" db stop >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "replay-hosts.sh needs root (ip netns)" >&2; exit 2; }
echo "free disk: $(df -h /tmp | awk 'NR==2 {print $4}'); output in $out" >&2

# --- the database, reachable from the worker networks -------------------------------------
url=$("$bin" --data-dir "$data/pg" --log warn db url)
port=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$url")
"$bin" --log warn seed --database-url "$url" --events "$events" --aggregates $((events / 10)) --seed 42 >/dev/null
psql -qX "$url" -v ON_ERROR_STOP=1 <<'SQL'
ALTER SYSTEM SET listen_addresses = '*';
ALTER SYSTEM SET tcp_user_timeout = 3000;
ALTER SYSTEM SET tcp_keepalives_idle = 1;
ALTER SYSTEM SET tcp_keepalives_interval = 1;
ALTER SYSTEM SET tcp_keepalives_count = 3;
SQL
echo "host all all $net.0.0/16 scram-sha-256" >>"$data/pg/pg_hba.conf"
"$bin" --data-dir "$data/pg" --log warn db stop >/dev/null
"$bin" --data-dir "$data/pg" --log warn db start >/dev/null

# --- one namespace and veth pair per worker -------------------------------------------------
for i in $(seq 1 $workers); do
    ip netns del "rp-w$i" 2>/dev/null || true
    ip link del "rpv$i" 2>/dev/null || true
    ip netns add "rp-w$i"
    ip link add "rpv$i" type veth peer name "rpw$i"
    ip link set "rpw$i" netns "rp-w$i"
    ip addr add "$net.$i.1/24" dev "rpv$i"
    ip link set "rpv$i" up
    ip netns exec "rp-w$i" ip addr add "$net.$i.2/24" dev "rpw$i"
    ip netns exec "rp-w$i" ip link set "rpw$i" up
    ip netns exec "rp-w$i" ip link set lo up
done
# The URL as worker i sees it: the server's address on its link, or its relay on loopback.
worker_url() { # i host port
    sed -E "s#@[^/]+/#@$2:$3/#" <<<"$url"
}

reset() {
    psql -qX "$url" -v ON_ERROR_STOP=1 -f "$here/reset-v4.sql" >/dev/null 2>&1 || true
}
replay_in() { # i url [flags...]
    local i=$1 u=$2
    shift 2
    ip netns exec "rp-w$i" "$bin" --log warn projector --database-url "$u" --mode replay --projection v4 \
        --workers 1 --progress false "$@"
}
now() { date +%s.%N; }

# --- 1. throughput: workers x latency -------------------------------------------------------
echo "rtt_ms,workers,round,seconds,events_per_s" >"$out/runs.csv"
relay_base=7000
for rtt in ${RTTS-0 0.5 5}; do
    relays=()
    urls=()
    for i in $(seq 1 $workers); do
        if [ "$rtt" = 0 ]; then
            urls[$i]=$(worker_url "$i" "$net.$i.1" "$port")
        else
            rport=$((relay_base + i))
            ip netns exec "rp-w$i" python3 "$here/delay_relay.py" "$rport" "$net.$i.1" "$port" \
                "$(python3 -c "print($rtt / 2)")" >"$out/relay$i.log" 2>&1 &
            relays+=($!)
            pids+=($!)
            urls[$i]=$(worker_url "$i" 127.0.0.1 "$rport")
        fi
    done
    for i in $(seq 1 $workers); do # the relays are up once a connection through them works
        until ip netns exec "rp-w$i" psql -qXAt "${urls[$i]}" -c 'SELECT 1' >/dev/null 2>&1; do sleep 0.1; done
    done
    for round in $(seq 1 "$rounds"); do
        for k in 1 2 3; do
            reset
            start=$(now)
            running=()
            for i in $(seq 1 "$k"); do
                replay_in "$i" "${urls[$i]}" >"$out/replay-$rtt-$k-$i.log" 2>&1 &
                running+=($!)
            done
            for pid in "${running[@]}"; do wait "$pid"; done
            end=$(now)
            python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[3]},{sys.argv[4]},{sys.argv[5]},{s:.2f},{int(sys.argv[6])/s:.0f}')" \
                "$start" "$end" "$rtt" "$k" "$round" "$events" | tee -a "$out/runs.csv" >&2
        done
    done
    for pid in "${relays[@]}"; do kill "$pid" 2>/dev/null || true; done
done

# --- 2. a network partition of worker 1, mid-partition --------------------------------------
reset
q() { psql -qXAt "$url" -v ON_ERROR_STOP=1 -c "$1"; }
key_sql="hashtext('reproject:bulk:v4')::oid"
# Worker 1 alone first, slowed so that one partition takes about 20 s; then worker 2 at full
# speed.
slow=$((events / 16 / 20 + 1))
replay_in 1 "$(worker_url 1 "$net.1.1" "$port")" --rate-limit "$slow" >"$out/partition-w1.log" 2>&1 &
w1=$!
pids+=($w1)
until [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $key_sql AND granted")" -ge 1 ]; do
    sleep 0.05
done
w1pid=$(q "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $key_sql AND granted LIMIT 1")
replay_in 2 "$(worker_url 2 "$net.2.1" "$port")" >"$out/partition-w2.log" 2>&1 &
w2=$!
pids+=($w2)
sleep 1 # worker 1 a second further into its partition; nothing below waits on this
# The partition worker 1 folds at the moment its link goes down.
part=$(q "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $key_sql AND granted AND pid = $w1pid")
[ -n "$part" ] || { echo "worker 1 holds no partition (it finished one before the cut)" >&2; exit 1; }
ip link set rpv1 down
down=$(now)
echo "partition: worker 1 (backend $w1pid) cut off while folding partition $part" >&2
# Taken over: another session holds the partition's lock, or has already committed it (worker 1
# committed nothing of it: it was cut off mid-partition).
until [ "$(q "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $key_sql AND objid = $part AND granted AND pid <> $w1pid) + (SELECT count(*) FROM read.projection_offsets WHERE version = 'v4' AND partition = $part AND events_applied > 0)")" -ge 1 ]; do
    if [ "$(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1]) > 120))" "$down" "$(now)")" = 1 ]; then
        echo "partition $part not taken over within 120 s" >&2
        exit 1
    fi
    sleep 0.05
done
taken=$(now)
# Worker 2 commits the partition (its position reaches the boundary), then the state is frozen.
wait "$w2" || { echo "worker 2 failed: $(tail -3 "$out/partition-w2.log")" >&2; exit 1; }
table=$(q "SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'read.accounts_v4'::regclass AND pg_get_expr(c.relpartbound, c.oid) LIKE '%remainder $part)'")
q "CREATE TABLE public.hosts_check AS SELECT aggregate_id, xmin::text AS x FROM $table; CREATE TABLE public.hosts_offsets AS SELECT xmin::text AS x, * FROM read.projection_offsets WHERE version = 'v4'"
ip link set rpv1 up
back=$(now)
# Worker 1 comes back to a server that has ended its sessions: whatever it does now, nothing
# of the partition may change. Wait (at most 120 s) for it to end.
w1_status=running
for _ in $(seq 1 1200); do
    if ! kill -0 "$w1" 2>/dev/null; then
        if wait "$w1"; then w1_status=exited_0; else w1_status=exited_error; fi
        break
    fi
    sleep 0.1
done
if [ "$w1_status" = running ]; then
    w1_status="still running 120 s after its link came back (killed)"
    kill "$w1" 2>/dev/null || true
fi
zombie=$(q "SELECT (SELECT count(*) FROM $table t FULL JOIN public.hosts_check c USING (aggregate_id) WHERE c.x IS DISTINCT FROM t.xmin::text) + (SELECT count(*) FROM read.projection_offsets o FULL JOIN public.hosts_offsets h USING (version, partition) WHERE o.version = 'v4' AND h.x IS DISTINCT FROM o.xmin::text)")
verify=$("$bin" --log warn verify --database-url "$url" --projection v4 --against expected --show-sql false 2>&1 || true)
echo "$verify" >"$out/verify.log"
diffs=$(sed -nE 's/^diffs: ([0-9]+)$/\1/p' <<<"$verify" | head -1)
python3 - "$out/runs.csv" "$events" "$down" "$taken" "$back" "$zombie" "${diffs:-unknown}" "$w1_status" "$part" <<'EOF'
import csv, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rate = {}
for r in rows:
    rate.setdefault(f"rtt_{r['rtt_ms']}ms_workers_{r['workers']}", []).append(float(r["events_per_s"]))
out = {"bench": "hosts", "events": int(sys.argv[2]), "scale": f"{int(sys.argv[2]):,} events, 1 worker per namespace"}
out.update({k + "_events_per_s": round(statistics.median(v)) for k, v in rate.items()})
out["partition_takeover_s"] = round(float(sys.argv[4]) - float(sys.argv[3]), 2)
out["link_down_s"] = round(float(sys.argv[5]) - float(sys.argv[3]), 2)
out["zombie_writes"] = int(sys.argv[6])
out["diffs"] = int(sys.argv[7]) if sys.argv[7].isdigit() else sys.argv[7]
out["cut_off_worker"] = sys.argv[8]
out["partition"] = int(sys.argv[9])
print(json.dumps(out))
sys.exit(0 if out["zombie_writes"] == 0 and out["diffs"] == 0 else 1)
EOF
