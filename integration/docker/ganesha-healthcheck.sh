#!/bin/bash
# ganesha-healthcheck [HOST]: healthy (exit 0) when the NFS (100003) and MOUNT (100005) programs at
# HOST (default 127.0.0.1) on $NFS_PORT (2049) and $MOUNT_PORT (20048) both accept a version 3 NULL
# call over TCP. It speaks ONC RPC itself (RFC 5531: one record-marked CALL, one REPLY), so it needs
# neither a portmapper (rpcinfo -n still asks one) nor any NFS client: it is the container's
# HEALTHCHECK, the entrypoint's readiness probe, and run-ganesha.sh's probe from the host.
set -u
HOST=${1:-127.0.0.1}

# rpc_null PORT PROGRAM_HEX: 0 when the reply is MSG_ACCEPTED with accept_stat SUCCESS for our xid.
rpc_null() {
    local port=$1 prog=$2 xid=6e617363 call reply
    # record mark (last fragment, 40 bytes), xid, CALL, RPC version 2, program, version 3,
    # procedure 0 (NULL), credential AUTH_NONE (flavor 0, length 0), verifier AUTH_NONE.
    call=$(printf '80000028%s0000000000000002%s000000030000000000000000000000000000000000000000' "$xid" "$prog" |
        sed 's/../\\x&/g')
    reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "$2" >&3 && head -c 28 <&3 | od -An -tx1 | tr -d " \n"' \
        "$HOST" "$port" "$call" 2>/dev/null) || return 1
    # record mark (last fragment, 24 bytes), xid, REPLY, MSG_ACCEPTED, verifier AUTH_NONE, SUCCESS
    [ "$reply" = "80000018${xid}0000000100000000000000000000000000000000" ]
}

rpc_null "${NFS_PORT:-2049}" 000186a3 || { echo "NFS program at $HOST:${NFS_PORT:-2049}: no answer to NULL"; exit 1; }
rpc_null "${MOUNT_PORT:-20048}" 000186a5 || { echo "MOUNT program at $HOST:${MOUNT_PORT:-20048}: no answer to NULL"; exit 1; }
echo "ok: NFS $HOST:${NFS_PORT:-2049} and MOUNT $HOST:${MOUNT_PORT:-20048} answer"
