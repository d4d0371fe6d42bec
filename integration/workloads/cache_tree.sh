# cache_tree.sh - guest side of TestCacheSmallerThanTree (busybox sh).
# Reads every file of tree/ twice with sha256sum, dropping the page cache
# before each pass, and prints "SUM <pass> <name> <sha256>" per file.
set -u
M=${KVMNFS_MNT:-/mnt}
for pass in 1 2; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    for f in "$M"/tree/*; do
        s=$(cat "$f" | sha256sum | cut -d' ' -f1) || { echo "FAIL: read $f"; exit 1; }
        echo "SUM $pass ${f##*/} $s"
    done
done
echo "DONE"
