# clients.sh - guest side of the client-network test (busybox sh).
# /mnt is the export open to 127.0.0.0/8 (the guest's calls arrive from the
# host's 127.0.0.1). The script then tries to mount the export limited to
# 10.99.0.0/16, which must fail. Prints OPEN-LS, OPEN-WRITE and DENIED-MOUNT
# lines for the host to check.
set -u
. /kvmnfs/env      # KVMNFS_SERVER, KVMNFS_PORT, KVMNFS_MOUNTPORT (written by run-guest.sh)
M=${KVMNFS_MNT:-/mnt}
DENIED_EXPORT=/denied
echo "OPEN-LS $(ls "$M" | tr '\n' ' ')"
if echo written-by-guest > "$M/from-guest"; then echo "OPEN-WRITE ok"; else echo "OPEN-WRITE failed"; fi
mkdir -p /tmp/denied
OPTS="vers=3,proto=tcp,mountproto=tcp,nolock,addr=$KVMNFS_SERVER,port=$KVMNFS_PORT,mountport=$KVMNFS_MOUNTPORT,soft,timeo=50,retrans=2"
if out=$(mount -t nfs -o "$OPTS" "$KVMNFS_SERVER:$DENIED_EXPORT" /tmp/denied 2>&1); then
    echo "DENIED-MOUNT succeeded: $(ls /tmp/denied | tr '\n' ' ')"
    umount /tmp/denied
else
    echo "DENIED-MOUNT refused: $out"
fi
