#!/usr/bin/env bash
# stop-ganesha.sh NAME: stop (SIGTERM, clean ganesha shutdown) and remove the ganesha origin container
# NAME started by run-ganesha.sh. The exported host directory or volume is left as it is. Refuses to
# touch a container that run-ganesha.sh did not make; a missing container is not an error.
# Exits 0 when the container is gone, 3 when it is gone but ganesha did not shut down cleanly.
set -euo pipefail
ROLE_LABEL=org.nascache.role=ganesha-origin
log() { echo "stop-ganesha: $*" >&2; }
[ $# -eq 1 ] || { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
NAME=$1
role=$(docker inspect --type container --format "{{index .Config.Labels \"${ROLE_LABEL%%=*}\"}}" "$NAME" 2>/dev/null) ||
    { log "no container $NAME"; exit 0; }
[ "$role" = "${ROLE_LABEL#*=}" ] || { log "error: container $NAME is not a ganesha origin; not touching it"; exit 1; }
was=$(docker inspect --type container --format '{{.State.Status}}' "$NAME")
docker stop --time "${GANESHA_STOP_TIMEOUT:-20}" "$NAME" >/dev/null
code=$(docker inspect --type container --format '{{.State.ExitCode}}' "$NAME")
if [ "$was" = running ] && [ "$code" != 0 ]; then
    docker logs --tail 20 "$NAME" >&2 || true
    docker rm "$NAME" >/dev/null
    log "removed $NAME; it exited with code $code (its last log lines are above)"
    exit 3
fi
docker rm "$NAME" >/dev/null
log "stopped and removed $NAME"
