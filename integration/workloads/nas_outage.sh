# nas_outage.sh - guest side of TestNASOriginOutage (kernel NFSv3 client ->
# nascache -> nfs-ganesha in Docker). Run with KVMNFS_IN_HOST=1 (host bash,
# coreutils, setpriv) on a hard mount with actimeo=0. Steps:
#   1. owners: a file created as uid/gid 1000 (the host checks the origin);
#   2. "STEP change-ready": the host rewrites change.txt in place, directly
#      in the origin's directory; the guest must see the new bytes through
#      nascache ("STEP change-seen") within a bounded number of polls;
#   3. "STEP loop-started" (after 3 rounds of it): a write/read loop (write loop/files/fN, sync,
#      read back the previous file after dropping caches) runs while the host
#      `docker stop`s the origin, waits for nascache to notice, and starts it
#      again, then writes loop/origin-back at the origin. The loop keeps
#      going until it sees that marker, does a few more rounds, re-reads
#      every file and leaves loop/manifest.sha256 for the host.
# Any I/O error or wrong byte is a "FAIL:" line; exit code 0 iff none.
set -u
M=${KVMNFS_MNT:-/mnt}
fails=0
F() { echo "FAIL: $*"; fails=$((fails + 1)); }
dropcache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
shaof() { sha256sum "$1" | cut -d' ' -f1; }

# 1. owners end to end
mkdir -p "$M/pub" && chmod 1777 "$M/pub" || F "mkdir pub"
setpriv --reuid=1000 --regid=1000 --clear-groups -- sh -c "echo by-1000 > '$M/pub/u1000.txt' && mkdir '$M/pub/d1000'" ||
    F "create as uid 1000"
echo "STEP owners $(stat -c '%u:%g' "$M/pub/u1000.txt" "$M/pub/d1000" | tr '\n' ' ')"

# 2. a change made directly at the origin becomes visible
[ "$(cat "$M/change.txt")" = v1 ] || F "change.txt before: $(cat "$M/change.txt" 2>&1)"
echo "STEP change-ready"
i=0
while [ "$(cat "$M/change.txt" 2>&1)" != "v2, rewritten in place at the origin" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then F "change at the origin not visible after 300 polls: $(cat "$M/change.txt" 2>&1)"; break; fi
    sleep 0.2
done
echo "STEP change-seen after $i polls"

# 3. the origin goes away in the middle of a read/write loop
mkdir -p "$M/loop/files" || F "mkdir loop"
: > /tmp/manifest
n=0 after=0
while [ $after -lt 3 ]; do
    n=$((n + 1))
    head -c $((65536 + n * 517)) /dev/urandom > /tmp/f || F "urandom"
    cp /tmp/f "$M/loop/files/f$n" || F "write f$n"
    sync || F "sync after f$n"
    echo "$(shaof /tmp/f)  f$n" >> /tmp/manifest
    if [ $n -gt 1 ]; then
        echo 3 > /proc/sys/vm/drop_caches
        want=$(sed -n "$((n - 1))p" /tmp/manifest | cut -d' ' -f1)
        got=$(shaof "$M/loop/files/f$((n - 1))") || F "read f$((n - 1))"
        [ "$got" = "$want" ] || F "f$((n - 1)) read back wrong"
    fi
    [ $n = 3 ] && echo "STEP loop-started"   # the host stops the origin now
    if [ -e "$M/loop/origin-back" ]; then after=$((after + 1)); fi
    [ $((n % 10)) = 0 ] && echo "STEP loop round $n"
    if [ $n -gt 3000 ]; then F "no origin-back marker after 3000 rounds"; break; fi
done
dropcache
while read -r sum name; do
    [ "$(shaof "$M/loop/files/$name")" = "$sum" ] || F "final read of $name"
done < /tmp/manifest
cp /tmp/manifest "$M/loop/manifest.sha256" && sync || F "write manifest"
echo "STEP loop-done rounds=$n"
dmesg | grep -iE 'nfs|rpc' | grep -vi registered | tail -10 | sed 's/^/dmesg: /'
echo "RESULT fails=$fails"
[ "$fails" = 0 ]
