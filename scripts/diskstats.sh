#!/usr/bin/env bash
# Where a long run's time goes, disk or CPU: samples /proc/diskstats (sectors read and written
# on DEVICE) and /proc/stat (CPU jiffies) every 5 s into a CSV while it runs, then summarises
# named time windows of that CSV.
#
#   scripts/diskstats.sh sample OUT.csv [DEVICE]          # until killed; DEVICE default vda
#   scripts/diskstats.sh windows OUT.csv 'NAME|FROM|TO'...  # FROM/TO: RFC 3339 UTC, from the run's log
#
# The device's own sequential rate, to compare with (caches dropped first; root):
#   sync; echo 3 > /proc/sys/vm/drop_caches; dd if=<a 1 GB segment of a log partition> of=/dev/null bs=8k
#   dd if=<another segment> of=/dev/null bs=1M iflag=direct
set -euo pipefail
case "${1:-}" in
  sample)
    out=$2; dev=${3:-vda}
    echo "t,read_sectors,write_sectors,user,nice,system,idle,iowait" > "$out"
    while true; do
      d=$(awk -v dev="$dev" '$3==dev{print $6","$10}' /proc/diskstats)
      c=$(awk '/^cpu /{print $2","$3","$4","$5","$6}' /proc/stat)
      echo "$(date +%s),$d,$c" >> "$out"
      sleep 5
    done
    ;;
  windows)
    csv=$2; shift 2
    python3 - "$csv" "$@" <<'PY'
import csv, sys, datetime
rows = list(csv.DictReader(open(sys.argv[1])))
def ts(s): return datetime.datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp()
for w in sys.argv[2:]:
    name, t0, t1 = w.split('|'); t0, t1 = ts(t0), ts(t1)
    sel = [r for r in rows if t0 <= int(r['t']) <= t1]
    if len(sel) < 2:
        print(name, 'too short'); continue
    a, b = sel[0], sel[-1]
    dt = int(b['t']) - int(a['t'])
    rd = (int(b['read_sectors']) - int(a['read_sectors'])) * 512 / 1e6 / dt
    wr = (int(b['write_sectors']) - int(a['write_sectors'])) * 512 / 1e6 / dt
    j = {k: int(b[k]) - int(a[k]) for k in ['user', 'nice', 'system', 'idle', 'iowait']}
    s = sum(j.values())
    print(f"{name}: {dt}s read {rd:.0f} MB/s write {wr:.0f} MB/s cpu user {100*(j['user']+j['nice'])/s:.0f}% "
          f"sys {100*j['system']/s:.0f}% iowait {100*j['iowait']/s:.0f}% idle {100*j['idle']/s:.0f}%")
PY
    ;;
  *) echo "usage: $0 sample OUT.csv [DEVICE] | windows OUT.csv 'NAME|FROM|TO'..." >&2; exit 2 ;;
esac
