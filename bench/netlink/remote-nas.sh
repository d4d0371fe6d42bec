#!/bin/bash
# remote-nas.sh up DIR PORT | down PORT | status PORT
#
# A NAS across a slow network, on this machine: nfs-ganesha exporting DIR
# runs inside its own network namespace and is reached over a point-to-point
# link with 1 ms of delay each way (2 ms round trip) and 1 Gbit/s, the
# stand-in for issue 5's `tc netem delay 1ms rate 1gbit` (this kernel has no
# sch_netem, so netdelay.c forwards between two TUN devices in user space).
#
#   up DIR PORT   start the link and ganesha (NFS on PORT, MOUNT on PORT+1),
#                 listening on $NAS_NET.2 (default 10.124.0.2) in the
#                 namespace ncnas-PORT; the host side is $NAS_NET.1
#   down PORT     stop ganesha and the forwarder (by their pids), delete the
#                 namespace; a no-op for what is not running
#   status PORT   namespace, forwarder and listening sockets
#
# Environment:
#   DELAY_US   one-way delay (default 1000)      RATE_MBIT  rate (default 1000, 0 = unlimited)
#   QUEUE_US   tail-drop queue (default 5000)    MTU        link MTU (default 1500)
#   NAS_NET    first three octets of the /30 (default 10.124.0)
#   NETDELAY   forwarder binary (default /var/tmp/nascache-netlink/netdelay,
#              built from netdelay.c next to this script when missing or older)
#   GANESHA_STATE_ROOT  ganesha's state for start-ganesha.sh (default
#              /var/tmp/nascache-netlink, apart from loopback ganeshas)
#
# Example:
#   bench/netlink/remote-nas.sh up /var/tmp/nascache-bench/data 39501
#   nfs-ls 'nfs://10.124.0.2/var/tmp/nascache-bench/data?version=3&nfsport=39501&mountport=39502'
#   bench/netlink/remote-nas.sh down 39501
#
# Needs root (ip netns, TUN), gcc, iproute2; ganesha is installed by
# start-ganesha.sh when missing.
set -euo pipefail
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
ACTION=$1
case "$ACTION" in
up) [ $# -eq 3 ] || usage; DIR=$2 PORT=$3 ;;
down | status) [ $# -eq 2 ] || usage; PORT=$2 ;;
*) usage ;;
esac
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -gt 0 ] && [ "$PORT" -lt 65535 ] || { echo "remote-nas: bad PORT $PORT" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
GUEST=$(cd "$HERE/../../integration/guest" && pwd)
NS=ncnas-$PORT HIF=nch$PORT NIF=ncn$PORT
NET=${NAS_NET:-10.124.0}
HOST_IP=$NET.1 NAS_IP=$NET.2
MTU=${MTU:-1500}
DELAY_US=${DELAY_US:-1000} RATE_MBIT=${RATE_MBIT:-1000} QUEUE_US=${QUEUE_US:-5000}
S=/var/tmp/nascache-netlink/link-$PORT
NETDELAY=${NETDELAY:-/var/tmp/nascache-netlink/netdelay}
export GANESHA_STATE_ROOT=${GANESHA_STATE_ROOT:-/var/tmp/nascache-netlink}
log() { echo "remote-nas: $*" >&2; }

# netdelay_pid prints the pid in the pid file if that process really is our
# forwarder for this link (so a recycled pid is never signalled).
netdelay_pid() {
    local pid; pid=$(cat "$S/netdelay.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "netdelay .* $HIF $NS $NIF" && echo "$pid"
}

down() {
    "$GUEST/stop-ganesha.sh" "$PORT" || true
    local pid
    if pid=$(netdelay_pid); then
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        log "netdelay pid $pid stopped; $(grep -h 'packets' "$S/netdelay.log" | tr '\n' ' ')"
    fi
    rm -f "$S/netdelay.pid"
    if ip netns list | grep -qw "^$NS"; then ip netns del "$NS"; log "netns $NS deleted"; fi
}

case "$ACTION" in
down)
    down ;;
status)
    ip netns list | grep -w "^$NS" || { echo "down"; exit 1; }
    if pid=$(netdelay_pid); then echo "netdelay pid $pid: $(head -1 "$S/netdelay.log")"; fi
    ip netns exec "$NS" ss -ltn ;;
up)
    if [ ! -x "$NETDELAY" ] || [ "$HERE/netdelay.c" -nt "$NETDELAY" ]; then
        mkdir -p "$(dirname "$NETDELAY")"
        gcc -O2 -Wall -o "$NETDELAY" "$HERE/netdelay.c" >&2
    fi
    if ip netns list | grep -qw "^$NS"; then
        log "$NS already exists; run: $0 down $PORT"; exit 1
    fi
    if ip -o addr show | grep -q " $NET\.[12]/"; then
        log "$NET.0/30 is already in use on this host (set NAS_NET)"; exit 1
    fi
    mkdir -p "$S" "$DIR"; DIR=$(realpath "$DIR")
    ip netns add "$NS"
    trap 'log "failed; cleaning up"; down' ERR
    ip -n "$NS" link set lo up
    setsid "$NETDELAY" -d "$DELAY_US" -r "$RATE_MBIT" -q "$QUEUE_US" "$HIF" "$NS" "$NIF" \
        </dev/null >"$S/netdelay.log" 2>&1 &
    echo $! > "$S/netdelay.pid"
    for _ in $(seq 50); do
        ip link show "$HIF" >/dev/null 2>&1 && ip -n "$NS" link show "$NIF" >/dev/null 2>&1 && break
        sleep 0.1
    done
    ip link set "$HIF" mtu "$MTU" up
    ip addr add "$HOST_IP/30" dev "$HIF"
    ip -n "$NS" link set "$NIF" mtu "$MTU" up
    ip -n "$NS" addr add "$NAS_IP/30" dev "$NIF"
    # ganesha inside the namespace, bound to the namespace's address (its
    # start-up rpcbind, if it needs one, also runs inside the namespace)
    ip netns exec "$NS" env GANESHA_BIND="$NAS_IP" "$GUEST/start-ganesha.sh" "$DIR" "$PORT" "$((PORT + 1))"
    timeout 5 bash -c "exec 3<>/dev/tcp/$NAS_IP/$PORT" ||
        { log "cannot connect to $NAS_IP:$PORT through the link"; false; }
    trap - ERR
    log "up: $(head -1 "$S/netdelay.log")"
    log "NFS $NAS_IP:$PORT MOUNT $NAS_IP:$((PORT + 1)) export $DIR (netns $NS)"
    ;;
esac
