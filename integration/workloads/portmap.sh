# portmap.sh - guest side of the portmapper test (busybox sh).
# run-guest.sh mounted the export with explicit ports on /mnt. This script
# mounts it a second time the way a GPU host would with no ports at all:
# `-o vers=3,nolock`, so the kernel asks the portmapper on port 111 of the
# server for the NFS and MOUNT ports. Prints PM-MOUNT and PM-READ lines.
set -u
. /kvmnfs/env      # KVMNFS_SERVER, KVMNFS_EXPORT (written by run-guest.sh)
mkdir -p /tmp/pm
if out=$(mount -t nfs -o "vers=3,nolock,addr=$KVMNFS_SERVER,soft,timeo=50,retrans=2" "$KVMNFS_SERVER:$KVMNFS_EXPORT" /tmp/pm 2>&1); then
    echo "PM-MOUNT ok $(grep " /tmp/pm " /proc/mounts)"
    echo "PM-READ $(cat /tmp/pm/hello.txt)"
    umount /tmp/pm
else
    echo "PM-MOUNT failed: $out"
fi
