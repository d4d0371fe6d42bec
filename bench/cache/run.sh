#!/bin/bash
# run.sh [--scale S] [--only loopback|netlink] [--results DIR]
#
# Issue 5's cache benchmark in one run. For each origin (nfs-ganesha on
# loopback, and nfs-ganesha in a network namespace behind a 1 ms each way,
# 1 Gbit/s link from bench/netlink), it measures, side by side:
#   origin direct | nascache cold (first epoch, fresh data_dir) | nascache warm (second epoch)
# for small-file files/s, 1 GiB MiB/s (project client; libnfs reader and
# nfs-cp when available) and stat-tree ops/s, plus a simulated training loop
# (origin direct vs nascache warm). Then it prints the table and issue 5's
# target ratios and writes bench/results/cache-DATE.json, cache-latest.json
# and a PNG chart (gnuplot, installed from Debian when missing).
#
#   --scale S    data set size relative to the issue's (default 1: 20,000
#                small files, 4 x 1 GiB, 50,000 empty files; 0.05 is a quick
#                run). The data set is cached under $BENCH_ROOT.
#   --only O     run one origin only
#   --results D  where result files go (default bench/results)
#
# Environment: BENCH_ROOT (default /var/tmp/nascache-bench), ports
# LOOP_PORT (39571), NET_PORT (39581), NC_PORT (39591; nascache), NAS_NET
# (10.124.0), BENCH_CONSISTENCY (export consistency mode used when the
# nascache build accepts the key; default immutable), BENCH_CACHE_SIZE
# (cache_size when accepted; default 1.5x the data set). Needs root (network
# namespace), Go, gcc. Every server it starts is stopped by pid on exit.
set -euo pipefail
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
SCALE=1 ONLY= RESULTS=
while [ $# -gt 0 ]; do
    case "$1" in
    --scale) SCALE=${2:?}; shift 2 ;;
    --only) ONLY=${2:?}; shift 2 ;;
    --results) RESULTS=${2:?}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ "$SCALE" =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || { echo "run.sh: --scale must be in (0, 1]" >&2; exit 2; }
case "$ONLY" in "" | loopback | netlink) ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (network namespace, ganesha)" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RESULTS=${RESULTS:-$REPO/bench/results}
ROOT=${BENCH_ROOT:-/var/tmp/nascache-bench}
DATA=$ROOT/data-s$SCALE
LOOP_PORT=${LOOP_PORT:-39571} NET_PORT=${NET_PORT:-39581} NC_PORT=${NC_PORT:-39591}
export NAS_NET=${NAS_NET:-10.124.0}
NAS_IP=$NAS_NET.2
CONSISTENCY=${BENCH_CONSISTENCY:-immutable}
export GANESHA_STATE_ROOT=$ROOT/ganesha        # the loopback ganesha's state
mkdir -p "$ROOT" "$RESULTS"
RUN=$(mktemp -d "$ROOT/run.XXXXXX")
BIN=$RUN/bin
M=$RUN/measurements.jsonl
STAMP=$(date -u +%Y%m%d-%H%M)
[ "$SCALE" = 1 ] || STAMP=$STAMP-s$SCALE
log() { echo "run.sh: $*" >&2; }
NOTES=()
note() { log "note: $*"; NOTES+=("$*"); }

NC_PID= LOOP_UP= NET_UP= ORIGIN_NOW= PORT_NOW=
stop_nascache() {
    if [ -n "$NC_PID" ] && kill -0 "$NC_PID" 2>/dev/null; then
        kill -TERM "$NC_PID"
        for _ in $(seq 150); do kill -0 "$NC_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$NC_PID" 2>/dev/null && { log "nascache pid $NC_PID: SIGKILL"; kill -KILL "$NC_PID"; }
        wait "$NC_PID" 2>/dev/null || true
    fi
    NC_PID=
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_nascache
    if [ -n "$LOOP_UP" ]; then "$REPO/integration/guest/stop-ganesha.sh" "$LOOP_PORT" || true; fi
    if [ -n "$NET_UP" ]; then "$REPO/bench/netlink/remote-nas.sh" down "$NET_PORT" || true; fi
    rm -rf "$RUN"/nc-*/data   # cache chunks: as large as the data set
    log "logs and measurements: $RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools
log "building bench/cache and nascache"
(cd "$REPO" && go build -o "$BIN/cache" ./bench/cache && go build -o "$BIN/nascache" ./cmd/nascache)
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l)
GIT_DIFF=$(git -C "$REPO" diff HEAD 2>/dev/null | sha256sum | cut -c1-16)
LIBNFSREAD= NFSCP=
if [ ! -e /usr/include/nfsc/libnfs.h ] || ! command -v nfs-cp >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnfs-dev libnfs-utils >/dev/null 2>&1 ||
        note "could not install libnfs-dev/libnfs-utils"
fi
if [ -e "$REPO/bench/nfsread/libnfs/libnfsread.c" ] && [ -e /usr/include/nfsc/libnfs.h ] &&
    cc -O2 -o "$BIN/libnfsread" "$REPO/bench/nfsread/libnfs/libnfsread.c" -lnfs 2>"$RUN/libnfsread.build.log"; then
    LIBNFSREAD=$BIN/libnfsread
else
    note "libnfs async reader (bench/nfsread/libnfs/libnfsread.c) not built: big-file libnfsread column skipped"
fi
if command -v nfs-cp >/dev/null; then NFSCP=$(command -v nfs-cp); else note "nfs-cp missing: its column skipped"; fi
GNUPLOT=
if ! command -v gnuplot >/dev/null; then
    log "installing gnuplot-nox"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null 2>&1; } ||
        true
fi
if command -v gnuplot >/dev/null; then GNUPLOT=$(command -v gnuplot); else note "gnuplot could not be installed: no PNG"; fi

# --- data set
"$BIN/cache" gen --data "$DATA" --scale "$SCALE" >&2
DS_BYTES=$(du -sb "$DATA" | cut -f1)

# --- nascache config: optional keys only if this build accepts them
CACHE_SIZE=${BENCH_CACHE_SIZE:-$(( (DS_BYTES * 3 / 2 / 1073741824) + 1 ))GiB}
nc_config() {  # nc_config FILE DATA_DIR ORIGIN_URL [EXTRA_TOP] [EXTRA_EXPORT] [BIG_ORIGIN_URL]
    cat > "$1" <<EOF
listen: 127.0.0.1:$NC_PORT
admin_listen: ""
data_dir: $2
log_level: warn
log_format: json
${4:-}
exports:
  - path: /bench
    origin: $3
    read_only: true
    ${5:-}
EOF
    # libnfs mounts the directory that holds the file it reads, and
    # nascache's MNT accepts export roots only: big/ gets its own export.
    if [ -n "${6:-}" ]; then cat >> "$1" <<EOF
  - path: /benchbig
    origin: $6
    read_only: true
    ${5:-}
EOF
    fi
}
probe_origin="nfs://127.0.0.1:$LOOP_PORT$DATA?mountport=$((LOOP_PORT + 1))"
TOP_KEYS= EXPORT_KEYS=
nc_config "$RUN/probe.yaml" "$RUN/probe" "$probe_origin" "cache_size: $CACHE_SIZE"
if "$BIN/nascache" check-config --config "$RUN/probe.yaml" >/dev/null 2>&1; then
    TOP_KEYS="cache_size: $CACHE_SIZE"
else
    note "this nascache build does not accept cache_size (no data cache yet: reads pass through to the origin)"
fi
nc_config "$RUN/probe.yaml" "$RUN/probe" "$probe_origin" "" "consistency: $CONSISTENCY"
if "$BIN/nascache" check-config --config "$RUN/probe.yaml" >/dev/null 2>&1; then
    EXPORT_KEYS="consistency: $CONSISTENCY"
else
    note "this nascache build does not accept exports[].consistency (no attribute cache yet)"
fi
rm -rf "$RUN/probe" "$RUN/probe.yaml"

start_nascache() {  # start_nascache NAME ORIGIN_URL BIG_ORIGIN_URL: fresh data_dir
    local d=$RUN/nc-$1
    rm -rf "$d"; mkdir -p "$d"
    nc_config "$d/nascache.yaml" "$d/data" "$2" "$TOP_KEYS" "$EXPORT_KEYS" "$3"
    "$BIN/nascache" check-config --config "$d/nascache.yaml" >&2
    "$BIN/nascache" serve --config "$d/nascache.yaml" >"$d/nascache.log" 2>&1 &
    NC_PID=$!
    for _ in $(seq 100); do
        kill -0 "$NC_PID" 2>/dev/null || { log "nascache exited:"; tail -20 "$d/nascache.log" >&2; return 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$NC_PORT") 2>/dev/null && { log "nascache pid $NC_PID serving $2"; return 0; }
        sleep 0.1
    done
    log "nascache did not listen on $NC_PORT in 10 s"; return 1
}

# measure ORIGIN MODE URL LIBNFS_URL_PREFIX LIBNFS_QUERY: one epoch of every workload
STEPS=$(awk -v s="$SCALE" 'BEGIN { n = int(100 * s + 0.5); print (n < 10 ? 10 : n) }')
# cpu_pids: the servers whose CPU time each record carries
cpu_pids() {
    local p l=
    p=$(cat "$GANESHA_STATE_ROOT/ganesha-$PORT_NOW/ganesha.pid" 2>/dev/null) && l="ganesha=$p"
    p=$(cat "/var/tmp/nascache-netlink/link-$PORT_NOW/netdelay.pid" 2>/dev/null) && [ "$ORIGIN_NOW" = netlink ] && l="$l,netdelay=$p"
    [ -n "$NC_PID" ] && l="$l,nascache=$NC_PID"
    echo "${l#,}"
}
measure() {
    local o=$1 mode=$2 url=$3 lib=$4 q=$5
    local c=("$BIN/cache")
    local f=(--data "$DATA" --url "$url" --origin "$o" --mode "$mode" --out "$M" --cpu-pids "$(cpu_pids)")
    "${c[@]}" rtt "${f[@]}" --count 300
    "${c[@]}" small "${f[@]}" --n 32
    "${c[@]}" big "${f[@]}" --n 32 --file 0
    if [ -n "$LIBNFSREAD" ]; then
        "${c[@]}" libnfs "${f[@]}" --kind libnfsread --tool "$LIBNFSREAD" --n 32 --file 1 --libnfs-url "$lib/big-1.bin?$q"
    fi
    if [ -n "$NFSCP" ]; then
        "${c[@]}" libnfs "${f[@]}" --kind nfs-cp --tool "$NFSCP" --file 2 --libnfs-url "$lib/big-2.bin?$q"
    fi
    "${c[@]}" stat "${f[@]}" --n 32
}
train() {
    "$BIN/cache" train --data "$DATA" --url "$3" --origin "$1" --mode "$2" --out "$M" --cpu-pids "$(cpu_pids)" \
        --n 32 --steps "$STEPS" --batch 256 --compute 100ms --prefetch 2
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
run_origin() {  # run_origin NAME HOST NFS_PORT
    local o=$1 host=$2 port=$3
    ORIGIN_NOW=$o PORT_NOW=$port
    local direct="nfs://$host:$port$DATA?mountport=$((port + 1))"
    local libdirect="nfs://$host$DATA/big" libq="version=3&nfsport=$port&mountport=$((port + 1))"
    log "== $o: origin direct ($direct)"
    measure "$o" direct "$direct" "$libdirect" "$libq"
    train "$o" direct "$direct"
    start_nascache "$o" "$direct" "nfs://$host:$port$DATA/big?mountport=$((port + 1))"
    local via="nfs://127.0.0.1:$NC_PORT/bench?mountport=$NC_PORT"
    local libvia="nfs://127.0.0.1/benchbig" libvq="version=3&nfsport=$NC_PORT&mountport=$NC_PORT"
    log "== $o: nascache cold (first epoch)"
    measure "$o" cold "$via" "$libvia" "$libvq"
    log "== $o: nascache warm (second epoch)"
    measure "$o" warm "$via" "$libvia" "$libvq"
    train "$o" warm "$via"
    stop_nascache
}

if [ "$ONLY" != netlink ]; then
    LOOP_UP=1
    "$REPO/integration/guest/start-ganesha.sh" "$DATA" "$LOOP_PORT" "$((LOOP_PORT + 1))"
    run_origin loopback 127.0.0.1 "$LOOP_PORT"
    "$REPO/integration/guest/stop-ganesha.sh" "$LOOP_PORT"; LOOP_UP=
fi
if [ "$ONLY" != loopback ]; then
    NET_UP=1
    "$REPO/bench/netlink/remote-nas.sh" up "$DATA" "$NET_PORT"
    run_origin netlink "$NAS_IP" "$NET_PORT"
    "$REPO/bench/netlink/remote-nas.sh" down "$NET_PORT"; NET_UP=
fi

# --- report
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
notes_json=$(for n in "${NOTES[@]+"${NOTES[@]}"}"; do json_str "$n"; echo; done | paste -sd, -)
cat > "$RUN/meta.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "scale": $SCALE,
  "duration_s": $(( $(date +%s) - T0 )),
  "dataset": $(cat "$DATA/.bench-dataset.json"),
  "dataset_dir_bytes": $DS_BYTES,
  "host": {"cores": $(nproc), "kernel": $(json_str "$(uname -r)"), "mem_gib": $(awk '/MemTotal/ {print int($2/1048576)}' /proc/meminfo),
           "loadavg_start": $(json_str "$LOAD_START"), "loadavg_end": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")},
  "nascache": {"git_rev": $(json_str "$GIT_REV"), "uncommitted_files": $GIT_DIRTY,
               "worktree_diff_sha256": $(json_str "$GIT_DIFF"),
               "version": $(json_str "$("$BIN/nascache" version 2>&1 | head -1)"),
               "config_top_keys": $(json_str "$TOP_KEYS"), "config_export_keys": $(json_str "$EXPORT_KEYS")},
  "ganesha": $(json_str "$(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo unknown)"),
  "link": {"delay_us_each_way": ${DELAY_US:-1000}, "rate_mbit": ${RATE_MBIT:-1000}, "impl": "bench/netlink/netdelay.c (userspace TUN forwarder; no sch_netem on this kernel)"},
  "client": {"outstanding": 32, "conns": 2, "read_bytes": 1048576},
  "train": {"steps": $STEPS, "batch": 256, "compute_ms": 100, "prefetch_batches": 2, "workers": 32},
  "notes": [${notes_json}]
}
EOF
"$BIN/cache" report --in "$M" --meta "$RUN/meta.json" --json "$RESULTS/cache-$STAMP.json" \
    --plot-dir "$RUN/plot" --png "$RESULTS/cache-$STAMP.png"
cp "$RESULTS/cache-$STAMP.json" "$RESULTS/cache-latest.json"
if [ -n "$GNUPLOT" ]; then
    if "$GNUPLOT" "$RUN/plot/plot.gp" 2>"$RUN/plot/gnuplot.log" ||
        { sed -i 's/^set terminal pngcairo/set terminal png/' "$RUN/plot/plot.gp" && "$GNUPLOT" "$RUN/plot/plot.gp" 2>>"$RUN/plot/gnuplot.log"; }; then
        cp "$RESULTS/cache-$STAMP.png" "$RESULTS/cache-latest.png"
        log "chart: $RESULTS/cache-$STAMP.png"
    else
        log "gnuplot failed (see $RUN/plot/gnuplot.log): no PNG"
    fi
fi
for n in "${NOTES[@]+"${NOTES[@]}"}"; do echo "note: $n"; done
log "results: $RESULTS/cache-$STAMP.json (also cache-latest.json)"
