# cache_fresh.sh - guest side of TestCacheFreshness (busybox sh, actimeo=0).
# Reads f.bin ("READ1 <sha>"), prints "STEP rewrite" and waits (bounded)
# until phase (an existing file, "0") reads "1": the host rewrites f.bin,
# then phase, in place with a new mtime. (The signal is a content change of
# an existing file, not a new name: see the test's comment.) Then
# reads f.bin again and again ("POLL <sha>") until it equals new.sha256
# (bounded), dropping the page cache before each read.
set -u
M=${KVMNFS_MNT:-/mnt}
shaof() { cat "$1" | sha256sum | cut -d' ' -f1; }
new=$(cat "$M/new.sha256")
echo "READ1 $(shaof "$M/f.bin")"
echo "STEP rewrite"
i=0
while [ "$(cat "$M/phase")" != 1 ]; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then echo "FAIL: phase still not 1 after 600 polls"; exit 1; fi
    sleep 0.2
done
i=0
while :; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=$(shaof "$M/f.bin")
    echo "POLL $s"
    [ "$s" = "$new" ] && break
    i=$((i + 1))
    if [ $i -gt 150 ]; then echo "FAIL: old content still served after 150 polls"; exit 1; fi
    sleep 0.2
done
echo "DONE"
