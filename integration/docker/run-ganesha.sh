#!/usr/bin/env bash
# run-ganesha.sh NAME HOSTDIR [HOSTPORT]: run the nfs-ganesha origin NAS as container NAME.
#
# HOSTDIR is exported at /export: a host directory (any argument containing a '/': created if
# missing) is bind-mounted, anything else is taken as a Docker volume name. The container joins
# the user-defined network $GANESHA_NETWORK (default nascache-test, created if missing), where other
# containers reach it as NAME on ports 2049 (NFS), 20048 (MOUNT) and 111 (rpcbind). Both NFS and
# MOUNT are also published on 127.0.0.1: NFS on HOSTPORT and MOUNT on $GANESHA_MOUNT_HOSTPORT
# (default HOSTPORT+1); without HOSTPORT a free pair is picked. The ports are fixed for the life of
# the container, so `docker stop` + `docker start` serves again on the same ones.
#
# Waits (at most $GANESHA_READY_TIMEOUT seconds, default 60) until the server answers, then prints
# on stdout, one per line:
#   NAME=... NFS_PORT=... MOUNT_PORT=... CONTAINER_IP=... URL=nfs://127.0.0.1/export?version=3&...
# Running it again for an existing container of the same HOSTDIR starts it if it is stopped and
# prints the same; a different HOSTDIR or HOSTPORT is refused. Stop it with stop-ganesha.sh NAME.
#
# Environment: GANESHA_IMAGE (default: whatever build-ganesha-image.sh builds or has cached),
# GANESHA_NETWORK, GANESHA_MOUNT_HOSTPORT, GANESHA_READY_TIMEOUT, GANESHA_CAPS, and GANESHA_ENV: extra
# space-separated KEY=VALUE settings for the container (e.g. "ATTR_EXPIRATION=60 LOG_LEVEL=INFO").
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETWORK=${GANESHA_NETWORK:-nascache-test}
TIMEOUT=${GANESHA_READY_TIMEOUT:-60}
ROLE_LABEL=org.nascache.role=ganesha-origin
# Everything else is dropped. README.md says why each is needed and what fails without it:
# DAC_READ_SEARCH + SYS_ADMIN for file handles (open_by_handle_at; Docker's seccomp profile allows
# name_to_handle_at only with SYS_ADMIN), SETUID/SETGID for per-request credentials, KILL to stop
# rpcbind (which runs as _rpc), CHOWN/DAC_OVERRIDE/FOWNER/FSETID for root clients (No_Root_Squash).
# GANESHA_CAPS (space-separated) replaces the list, for experiments.
read -r -a CAPS <<<"${GANESHA_CAPS:-DAC_READ_SEARCH SYS_ADMIN SETUID SETGID KILL CHOWN DAC_OVERRIDE FOWNER FSETID}"

log() { echo "run-ganesha: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || usage
NAME=$1 HOSTDIR=$2 HOSTPORT=${3:-}
[[ $NAME =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad container name '$NAME'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "GANESHA_READY_TIMEOUT must be a number of seconds"
if [ -n "$HOSTPORT" ]; then
    [[ $HOSTPORT =~ ^[0-9]+$ ]] && [ "$HOSTPORT" -ge 1 ] && [ "$HOSTPORT" -le 65535 ] || die "bad HOSTPORT '$HOSTPORT'"
    MOUNT_HOSTPORT=${GANESHA_MOUNT_HOSTPORT:-$((HOSTPORT + 1))}
    [[ $MOUNT_HOSTPORT =~ ^[0-9]+$ ]] && [ "$MOUNT_HOSTPORT" -ge 1 ] && [ "$MOUNT_HOSTPORT" -le 65535 ] &&
        [ "$MOUNT_HOSTPORT" != "$HOSTPORT" ] || die "bad MOUNT port '$MOUNT_HOSTPORT'"
fi
command -v docker >/dev/null || die "docker not found"

if [[ $HOSTDIR == */* ]]; then
    mkdir -p "$HOSTDIR"
    HOSTDIR=$(realpath "$HOSTDIR")
    MOUNT_SPEC=type=bind,src=$HOSTDIR,dst=/export
    WANT_SOURCE=bind:$HOSTDIR
else
    [[ $HOSTDIR =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad volume name '$HOSTDIR'"
    MOUNT_SPEC=type=volume,src=$HOSTDIR,dst=/export
    WANT_SOURCE=volume:$HOSTDIR
fi

inspect() { docker inspect --type container --format "$1" "$NAME" 2>/dev/null; }
host_port() {  # CONTAINER_PORT: the host port it is published on, from the container's config
    inspect "{{with index .HostConfig.PortBindings \"$1/tcp\"}}{{(index . 0).HostPort}}{{end}}"
}
ensure_network() {
    docker network inspect "$NETWORK" >/dev/null 2>&1 && return
    # Another run may create it at the same time; only a network that still does not exist is an error.
    docker network create --label "$ROLE_LABEL" "$NETWORK" >/dev/null 2>&1 ||
        docker network inspect "$NETWORK" >/dev/null 2>&1 || die "cannot create docker network $NETWORK"
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready: the entrypoint's READY line from the current start, then an answer on the host ports.
wait_ready() {
    local started deadline state
    started=$(inspect '{{.State.StartedAt}}')
    deadline=$((SECONDS + TIMEOUT))
    while :; do
        state=$(inspect '{{.State.Status}}')
        if [ "$state" != running ]; then
            docker logs --tail 30 "$NAME" >&2 || true
            die "container $NAME is $state (exit code $(inspect '{{.State.ExitCode}}')); its log is above"
        fi
        # grep without -q reads everything: an early exit would fail docker logs (SIGPIPE, pipefail).
        if docker logs --since "$started" "$NAME" 2>&1 | grep '^ganesha-entrypoint: READY' >/dev/null; then break; fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            docker logs --tail 30 "$NAME" >&2 || true
            die "container $NAME not ready after ${TIMEOUT}s; its log is above"
        fi
        sleep 0.2
    done
    # From the host, through the published ports: the image's own probe, run here.
    until NFS_PORT=$NFS_PORT MOUNT_PORT=$MOUNT_PORT "$HERE/ganesha-healthcheck.sh" 127.0.0.1 >/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "127.0.0.1:$NFS_PORT / :$MOUNT_PORT do not answer from the host"
        sleep 0.2
    done
}

print_ports() {
    local ip
    ip=$(inspect "{{with index .NetworkSettings.Networks \"$NETWORK\"}}{{.IPAddress}}{{end}}")
    echo "NAME=$NAME"
    echo "NFS_PORT=$NFS_PORT"
    echo "MOUNT_PORT=$MOUNT_PORT"
    echo "CONTAINER_IP=$ip"
    echo "URL=nfs://127.0.0.1/export?version=3&nfsport=$NFS_PORT&mountport=$MOUNT_PORT"
    log "$NAME serves $WANT_SOURCE as 127.0.0.1:/export: NFS port $NFS_PORT, MOUNT port $MOUNT_PORT (in network $NETWORK: $NAME:2049, $NAME:20048)"
}

# --- an existing container: reuse it when it is the same origin, else refuse
if state=$(inspect '{{.State.Status}}'); then
    [ "$(inspect "{{index .Config.Labels \"${ROLE_LABEL%%=*}\"}}")" = "${ROLE_LABEL#*=}" ] ||
        die "a container named $NAME exists and is not a ganesha origin"
    have=$(inspect '{{range .Mounts}}{{if eq .Destination "/export"}}{{.Type}}:{{if eq .Type "volume"}}{{.Name}}{{else}}{{.Source}}{{end}}{{end}}{{end}}')
    [ "$have" = "$WANT_SOURCE" ] || die "container $NAME exports $have, not $WANT_SOURCE; run stop-ganesha.sh $NAME first"
    NFS_PORT=$(host_port 2049) MOUNT_PORT=$(host_port 20048)
    if [ -n "$HOSTPORT" ] && { [ "$HOSTPORT" != "$NFS_PORT" ] || [ "$MOUNT_HOSTPORT" != "$MOUNT_PORT" ]; }; then
        die "container $NAME is published on $NFS_PORT/$MOUNT_PORT, not $HOSTPORT/$MOUNT_HOSTPORT"
    fi
    if [ "$state" != running ]; then
        log "starting existing container $NAME ($state)"
        docker start "$NAME" >/dev/null
    fi
    wait_ready
    print_ports
    exit 0
fi

IMAGE=${GANESHA_IMAGE:-$("$HERE/build-ganesha-image.sh")}
ensure_network
envs=()
read -r -a settings <<<"${GANESHA_ENV:-}"
for kv in "${settings[@]}"; do envs+=(--env "$kv"); done
caps=(--cap-drop ALL)
for c in "${CAPS[@]}"; do caps+=(--cap-add "$c"); done

# try_run NFS MOUNT: 0 when started, 1 when a host port is taken, exits on any other failure.
try_run() {
    local out
    if out=$(docker run --detach --name "$NAME" --hostname "$NAME" --network "$NETWORK" \
        --label "$ROLE_LABEL" --mount "$MOUNT_SPEC" "${caps[@]}" "${envs[@]}" --tmpfs /run:mode=0755 \
        --publish "127.0.0.1:$1:2049/tcp" --publish "127.0.0.1:$2:20048/tcp" \
        --stop-timeout 20 "$IMAGE" 2>&1); then
        return 0
    fi
    # A failed start leaves a created container behind.
    docker rm --force "$NAME" >/dev/null 2>&1 || true
    if grep -qiE 'address already in use|port is already allocated' <<<"$out"; then return 1; fi
    die "docker run failed: $out"
}

if [ -n "$HOSTPORT" ]; then
    NFS_PORT=$HOSTPORT MOUNT_PORT=$MOUNT_HOSTPORT
    try_run "$NFS_PORT" "$MOUNT_PORT" || die "host port $NFS_PORT or $MOUNT_PORT is already in use"
else
    started=0
    for _ in $(seq 20); do
        NFS_PORT=$((32768 + (RANDOM % 14000) * 2)) MOUNT_PORT=$((NFS_PORT + 1))
        if ! port_free "$NFS_PORT" || ! port_free "$MOUNT_PORT"; then continue; fi
        if try_run "$NFS_PORT" "$MOUNT_PORT"; then started=1; break; fi
    done
    [ "$started" = 1 ] || die "found no free pair of host ports in 20 tries"
fi
wait_ready
print_ports
