# bigdir.sh - guest side of the 100,000-entry directory test (busybox sh).
# The host created big/ at the origin; this lists it with the kernel client,
# cold each time: READDIR (ls) and READDIRPLUS + attributes (ls -l). Prints
#   COUNT ls N / SHA ls HEX / COUNT ls-l N
# for the host to compare with what it created.
set -u
cd "${KVMNFS_MNT:-/mnt}/big" || exit 1
now() { cut -d' ' -f1 /proc/uptime; }
dropcache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
dropcache; t=$(now)
ls > /tmp/names || exit 1
echo "# ls took $(awk -v a="$t" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s"
echo "COUNT ls $(wc -l < /tmp/names)"
echo "SHA ls $(sha256sum < /tmp/names | cut -d' ' -f1)"
dropcache; t=$(now)
ls -l > /tmp/long || exit 1
echo "# ls -l took $(awk -v a="$t" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s"
echo "COUNT ls-l $(grep -c '^-' /tmp/long)"
echo "SIZES ls-l $(awk '/^-/ { s += $5 } END { print s }' /tmp/long)"
