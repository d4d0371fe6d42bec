#!/bin/bash
# ganesha-entrypoint: PID 1 of the nascache origin NAS container.
#
# Exports $EXPORT_PATH (a bind-mounted host directory or a volume) over NFSv3/TCP with nfs-ganesha
# (FSAL VFS), AUTH_SYS, on fixed ports. Everything goes to stdout (docker logs). Once both the NFS
# and the MOUNT program answer a NULL call it prints one line starting with
#   ganesha-entrypoint: READY
# SIGTERM (docker stop) shuts ganesha down cleanly; the container then exits 0.
#
# Environment (defaults set in the Dockerfile):
#   NFS_PORT=2049 MOUNT_PORT=20048   ports inside the container
#   EXPORT_PATH=/export              directory exported, also the path clients mount
#   ATTR_EXPIRATION=0                ganesha attribute cache lifetime in seconds (0: none)
#   SQUASH=No_Root_Squash            No_Root_Squash | Root_Squash | All_Squash
#   ACCESS_TYPE=RW                   RW | RO
#   LOG_LEVEL=EVENT                  FATAL | MAJ | CRIT | WARN | EVENT | INFO | DEBUG | FULL_DEBUG
#   RPCBIND=keep                     keep: rpcbind keeps running (port 111, for clients that look
#                                    ports up); startup: only while ganesha starts (ganesha cannot
#                                    start without registering with rpcbind, but never needs it after)
#   READY_TIMEOUT=30                 seconds ganesha gets to answer before the container gives up
set -uo pipefail

log() { echo "ganesha-entrypoint: $*"; }
die() { log "error: $*"; exit 1; }

# --- validate the environment (all problems at once)
errs=()
is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
is_port "${NFS_PORT:-}" || errs+=("NFS_PORT=${NFS_PORT:-} is not a port number")
is_port "${MOUNT_PORT:-}" || errs+=("MOUNT_PORT=${MOUNT_PORT:-} is not a port number")
[ "${NFS_PORT:-}" != "${MOUNT_PORT:-}" ] || errs+=("NFS_PORT and MOUNT_PORT must differ")
for p in "${NFS_PORT:-}" "${MOUNT_PORT:-}"; do [ "$p" != 111 ] || errs+=("port 111 is rpcbind's"); done
[[ ${EXPORT_PATH:-} =~ ^/[A-Za-z0-9._/-]*$ ]] || errs+=("EXPORT_PATH=${EXPORT_PATH:-} must be an absolute path of [A-Za-z0-9._/-]")
[ -d "${EXPORT_PATH:-/nonexistent}" ] || errs+=("EXPORT_PATH=${EXPORT_PATH:-} is not a directory (bind-mount a host directory or a volume there)")
[[ ${ATTR_EXPIRATION:-} =~ ^[0-9]+$ ]] || errs+=("ATTR_EXPIRATION=${ATTR_EXPIRATION:-} must be a number of seconds")
[[ ${SQUASH:-} =~ ^(No_Root_Squash|Root_Squash|All_Squash)$ ]] || errs+=("SQUASH=${SQUASH:-} must be No_Root_Squash, Root_Squash or All_Squash")
[[ ${ACCESS_TYPE:-} =~ ^(RW|RO)$ ]] || errs+=("ACCESS_TYPE=${ACCESS_TYPE:-} must be RW or RO")
[[ ${LOG_LEVEL:-} =~ ^(FATAL|MAJ|CRIT|WARN|EVENT|INFO|DEBUG|MID_DEBUG|FULL_DEBUG)$ ]] || errs+=("LOG_LEVEL=${LOG_LEVEL:-} is not a ganesha log level")
[[ ${RPCBIND:-} =~ ^(keep|startup)$ ]] || errs+=("RPCBIND=${RPCBIND:-} must be keep or startup")
[[ ${READY_TIMEOUT:-} =~ ^[0-9]+$ ]] || errs+=("READY_TIMEOUT=${READY_TIMEOUT:-} must be a number of seconds")
if [ ${#errs[@]} -gt 0 ]; then
    for e in "${errs[@]}"; do log "error: $e"; done
    exit 2
fi

# --- fresh run-time state. Without a tmpfs, /run lives on the container's own file system, which
# survives docker stop/start and, with Docker's fuse-overlayfs storage driver, made rpcbind fail now
# and then to re-create its unix socket /run/rpcbind.sock after a restart (ganesha then exits with
# "Cannot register NFS V3 on TCP"). Run the container with --tmpfs /run, as run-ganesha.sh does.
[ "$(stat -f -c %T /run 2>/dev/null)" = tmpfs ] ||
    log "warning: /run is not a tmpfs (docker run --tmpfs /run); restarts may fail to register with rpcbind"
rm -rf /run/ganesha /run/rpcbind /run/rpcbind.sock /run/rpcbind.lock
mkdir -p /run/ganesha/recovery || die "cannot create /run/ganesha"
sed -e "s|@NFS_PORT@|$NFS_PORT|g" -e "s|@MOUNT_PORT@|$MOUNT_PORT|g" -e "s|@EXPORT_PATH@|$EXPORT_PATH|g" \
    -e "s|@ATTR_EXPIRATION@|$ATTR_EXPIRATION|g" -e "s|@SQUASH@|$SQUASH|g" -e "s|@ACCESS_TYPE@|$ACCESS_TYPE|g" \
    -e "s|@LOG_LEVEL@|$LOG_LEVEL|g" /etc/ganesha/ganesha.conf.in >/run/ganesha/ganesha.conf ||
    die "cannot render /run/ganesha/ganesha.conf"

GPID='' RPID='' LPID='' stopping=0
stop_rpcbind() {
    # rpcbind runs as _rpc: signalling it needs CAP_KILL; never wait for a process not signalled.
    if [ -n "$RPID" ]; then
        if kill -TERM "$RPID" 2>/dev/null; then wait "$RPID" 2>/dev/null; else log "warning: cannot stop rpcbind"; fi
        RPID=
    fi
}
# finish: after ganesha has exited, stop rpcbind and let the log relay drain ganesha's last lines.
finish() {
    stop_rpcbind
    if [ -n "$LPID" ]; then wait "$LPID" 2>/dev/null; LPID=; fi
}
on_term() {
    stopping=1
    log "signal received: stopping ganesha"
    if [ -n "$GPID" ]; then kill -TERM "$GPID" 2>/dev/null; fi
}
trap on_term TERM INT

# --- rpcbind: ganesha 4.3 exits at start-up ("Cannot register NFS V3 on TCP") without one.
rpcbind -f &
RPID=$!
for _ in $(seq 100); do
    rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break
    kill -0 "$RPID" 2>/dev/null || die "rpcbind exited during start-up"
    sleep 0.1
done
rpcinfo -p 127.0.0.1 >/dev/null 2>&1 || die "rpcbind does not answer"
[ "$stopping" = 0 ] || { stop_rpcbind; exit 0; }

# --- ganesha in the foreground of its own process. Its log passes through relay_log on the way to
# stdout, which marks start-up milestones: ganesha still starts and answers NULL calls when the
# export's root cannot be looked up (e.g. name_to_handle_at refused), so answers alone prove little.
relay_log() {
    local line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case $line in
        *"NFS SERVER INITIALIZED"*) : >/run/ganesha/initialized ;;
        # e.g. "init_export_root :EXPORT :CRIT :Lookup failed on path, ExportId=1 Path=/export"
        *":EXPORT :CRIT :"* | *":EXPORT :MAJ :"* | *":EXPORT :FATAL :"*) printf '%s\n' "$line" >>/run/ganesha/export-errors ;;
        esac
    done
}
mkfifo /run/ganesha/log.fifo || die "cannot create /run/ganesha/log.fifo"
relay_log </run/ganesha/log.fifo &
LPID=$!
log "starting nfs-ganesha: export $EXPORT_PATH, NFS port $NFS_PORT, MOUNT port $MOUNT_PORT, attr expiration ${ATTR_EXPIRATION}s"
ganesha.nfsd -F -f /run/ganesha/ganesha.conf -L STDOUT -N "NIV_$LOG_LEVEL" -p /run/ganesha/ganesha.pid \
    >/run/ganesha/log.fifo 2>&1 &
GPID=$!

deadline=$((SECONDS + READY_TIMEOUT))
until [ -e /run/ganesha/initialized ] && /usr/local/bin/ganesha-healthcheck >/dev/null; do
    if ! kill -0 "$GPID" 2>/dev/null; then
        wait "$GPID"
        rc=$?
        finish
        [ "$stopping" = 1 ] && exit 0
        log "error: ganesha.nfsd exited during start-up (status $rc)"
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        log "error: ganesha does not answer after ${READY_TIMEOUT}s; stopping"
        kill -TERM "$GPID" 2>/dev/null
        wait "$GPID"
        finish
        exit 1
    fi
    sleep 0.1
done
if [ -s /run/ganesha/export-errors ]; then
    log "error: ganesha cannot serve $EXPORT_PATH (see the log above); stopping"
    kill -TERM "$GPID" 2>/dev/null
    wait "$GPID"
    finish
    exit 1
fi
[ "$RPCBIND" = startup ] && stop_rpcbind
log "READY nfs_port=$NFS_PORT mount_port=$MOUNT_PORT export=$EXPORT_PATH"

# --- supervise. A trapped signal makes wait return > 128 before ganesha has exited; waiting again
# then gives ganesha's own status, or 127 once that status has already been returned.
wait "$GPID"
rc=$?
while [ "$rc" -gt 128 ]; do
    wait "$GPID"
    again=$?
    [ "$again" = 127 ] && break
    rc=$again
done
finish
if [ "$stopping" = 1 ]; then
    [ "$rc" = 0 ] && { log "stopped cleanly"; exit 0; }
    log "error: ganesha.nfsd exited with status $rc while stopping"
    exit "$rc"
fi
log "error: ganesha.nfsd exited unexpectedly (status $rc)"
exit $((rc == 0 ? 1 : rc))
