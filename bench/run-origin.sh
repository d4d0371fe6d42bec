#!/usr/bin/env bash
# run-origin.sh: issue 4's origin benchmark, in one run. nfs-ganesha in Docker
# (integration/docker) serves a 1 GiB file and a tree of 20,000 files of
# ~110 KiB (100 directories x 200 files, 60-160 KiB); each is read, back to
# back, by
#   - backend/nfs        (bench/nfsread: our pipelined client, N outstanding)
#   - libnfs             (bench/nfsread/libnfs: libnfsread for the file,
#                         libnfstree for the tree; raw async API, N outstanding)
#   - Debian's nfs-cp    (big file only, one READ in flight: for reference)
# ROUNDS times, alternating, and reports the medians and the ratio
# backend/nfs / libnfs (issue 4 asks for >= 0.90). Writes
# bench/results/origin-<UTC time>.json (+ .png with gnuplot) and prints a
# Markdown table for the README.
#
#   sudo bench/run-origin.sh                 # ROUNDS=3 N=32 CONNS=1
#
# Needs root and Docker; installs libnfs-dev, libnfs-utils and gnuplot-nox
# with apt if they are missing. The data is made once and kept in
# $BENCH_DIR (default /var/tmp/nascache-origin-bench, about 3.2 GB).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
ROUNDS=${ROUNDS:-3}
N=${N:-32}
CONNS=${CONNS:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/nascache-origin-bench}
NAME=${NAME:-nascache-origin-bench-$$}
data=$BENCH_DIR/data
bin=$BENCH_DIR/bin

log() { printf '%s run-origin: %s\n' "$(date -u +%T)" "$*" >&2; }

[[ $(id -u) == 0 ]] || { echo "run-origin.sh: needs root (Docker, the ganesha container)" >&2; exit 2; }

need=()
[[ -e /usr/include/nfsc/libnfs.h ]] || need+=(libnfs-dev)
command -v nfs-cp >/dev/null || need+=(libnfs-utils)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$bin"
log "building readers"
cc -O2 -o "$bin/libnfsread" "$here/nfsread/libnfs/libnfsread.c" -lnfs
cc -O2 -o "$bin/libnfstree" "$here/nfsread/libnfs/libnfstree.c" -lnfs
(cd "$repo" && go build -o "$bin/nfsread" ./bench/nfsread)

if [[ ! -e $data/.complete ]]; then
	log "making the data in $data (once)"
	rm -rf "$data"
	mkdir -p "$data/tree"
	python3 - "$data" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(4)
with open(os.path.join(root, "big.bin"), "wb") as f:
    for _ in range(1024):
        f.write(os.urandom(1 << 20))
for d in range(100):
    dd = os.path.join(root, "tree", "d%03d" % d)
    os.mkdir(dd)
    for i in range(200):
        with open(os.path.join(dd, "f%03d.bin" % i), "wb") as f:
            f.write(os.urandom(rng.randint(60 << 10, 160 << 10)))
PY
	touch "$data/.complete"
fi

"$repo/integration/docker/build-ganesha-image.sh" >/dev/null
cleanup() { "$repo/integration/docker/stop-ganesha.sh" "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
eval "$("$repo/integration/docker/run-ganesha.sh" "$NAME" "$data" | grep -E '^(NFS_PORT|MOUNT_PORT)=')"
log "ganesha $NAME: nfs $NFS_PORT mount $MOUNT_PORT"
ours="nfs://127.0.0.1:$NFS_PORT/export?mountport=$MOUNT_PORT"
theirs() { echo "nfs://127.0.0.1/export/$1?version=3&nfsport=$NFS_PORT&mountport=$MOUNT_PORT"; }

# Warm the page cache (and ganesha's handle cache) once, so that every
# reader sees the same server state.
"$bin/nfsread" -url "$ours" -file big.bin -tree tree -n "$N" -conns "$CONNS" >/dev/null

num() { sed -E -n "s|.*= ([0-9.]+) $1.*|\1|p"; }
declare -A res
for ((r = 1; r <= ROUNDS; r++)); do
	log "round $r of $ROUNDS"
	res[ours_big]+=" $("$bin/nfsread" -url "$ours" -file big.bin -n "$N" -conns "$CONNS" | num MiB/s)"
	res[libnfs_big]+=" $("$bin/libnfsread" "$(theirs big.bin)" "$N" | num MiB/s)"
	res[ours_tree]+=" $("$bin/nfsread" -url "$ours" -tree tree -n "$N" -conns "$CONNS" | num files/s)"
	res[libnfs_tree]+=" $("$bin/libnfstree" "$(theirs tree)" "$N" | num files/s)"
	t0=$(date +%s.%N)
	nfs-cp "$(theirs big.bin)" /dev/shm/nascache-nfscp.out >/dev/null
	rm -f /dev/shm/nascache-nfscp.out
	t1=$(date +%s.%N)
	res[nfscp_big]+=" $(python3 -c "print(round(1024/($t1-$t0),1))")"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=$repo/bench/results/origin-$stamp.json
python3 - "$out" "$ROUNDS" "$N" "$CONNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"${res[ours_big]}" "${res[libnfs_big]}" "${res[nfscp_big]}" "${res[ours_tree]}" "${res[libnfs_tree]}" <<'PY'
import json, statistics, sys
out, rounds, n, conns, cpus, load = sys.argv[1:7]
runs = [list(map(float, a.split())) for a in sys.argv[7:12]]
keys = ["backend_nfs_big_mib_s", "libnfs_big_mib_s", "nfs_cp_big_mib_s", "backend_nfs_tree_files_s", "libnfs_tree_files_s"]
med = {k: statistics.median(v) for k, v in zip(keys, runs)}
doc = {
    "when": out.rsplit("origin-", 1)[1][:-5],
    "origin": "nfs-ganesha 4.3 FSAL_VFS in Docker (integration/docker), loopback, data in page cache",
    "data": {"big_file_bytes": 1 << 30, "tree_files": 20000, "tree_file_kib": "60-160 (mean ~110)"},
    "outstanding": int(n), "backend_nfs_conns": int(conns), "rounds": int(rounds),
    "cpus": int(cpus), "loadavg_at_end": load,
    "runs": dict(zip(keys, runs)), "median": med,
    "ratio": {
        "big_file_backend_nfs_over_libnfs": round(med[keys[0]] / med[keys[1]], 3),
        "tree_backend_nfs_over_libnfs": round(med[keys[3]] / med[keys[4]], 3),
    },
    "target": ">= 0.90 for both ratios (issue 4)",
}
json.dump(doc, open(out, "w"), indent=2)
print(json.dumps(doc, indent=2))
m, r = med, doc["ratio"]
print()
print("| reader | 1 GiB file | 20,000-file tree |")
print("| --- | --- | --- |")
print(f"| backend/nfs (nfsread, {n} outstanding, {conns} conn) | {m[keys[0]]:.0f} MiB/s | {m[keys[3]]:.0f} files/s |")
print(f"| libnfs (libnfsread / libnfstree, {n} outstanding) | {m[keys[1]]:.0f} MiB/s | {m[keys[4]]:.0f} files/s |")
print(f"| Debian nfs-cp (1 READ in flight) | {m[keys[2]]:.0f} MiB/s | - |")
print(f"| **ratio backend/nfs / libnfs** | **{r['big_file_backend_nfs_over_libnfs']:.2f}** | **{r['tree_backend_nfs_over_libnfs']:.2f}** |")
PY
if command -v gnuplot >/dev/null; then
	png=${out%.json}.png
	python3 - "$out" >"$BENCH_DIR/plot.dat" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["median"]
print('"big file (MiB/s)"', d["backend_nfs_big_mib_s"], d["libnfs_big_mib_s"], d["nfs_cp_big_mib_s"])
print('"tree (files/s / 10)"', d["backend_nfs_tree_files_s"] / 10, d["libnfs_tree_files_s"] / 10, 0)
PY
	gnuplot <<GP
set terminal pngcairo size 800,480 noenhanced
set output "$png"
set title "NFSv3 reads from nfs-ganesha (Docker, loopback), medians of $ROUNDS rounds"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set key top right
plot "$BENCH_DIR/plot.dat" using 2:xtic(1) title "backend/nfs", '' using 3 title "libnfs", '' using 4 title "nfs-cp"
GP
	log "chart: $png"
fi
log "results: $out"
