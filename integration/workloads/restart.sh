# restart.sh - guest side of the kill -9 restart test (busybox sh in the guest).
#
# The host prepared, at the origin: d/held.bin, d/sub/a.txt, looked.bin and
# expect/<name>.sha256 holding their checksums. This script, on a hard mount
# with actimeo=0 (so that polling for the host's marker revalidates):
#   1. cds into d (the cwd holds a directory handle), opens held.bin on fd 3 and
#      reads its first MiB, opens rw.bin read-write on fd 4, lists d, stats and
#      reads files by path (the client now holds their handles), drops its
#      caches, writes guest-ready at the export root and prints "STEP ready";
#   2. the host sees that line, checks guest-ready at the origin, kill -9's
#      nascache, starts it again on the same port and data_dir and writes
#      "restarted" at the origin;
#   3. once the marker is visible here, the script reads the rest of held.bin
#      through fd 3, writes through fd 4, stats/reads/lists by the paths it had
#      looked up before, compares with what it saw before, and creates new
#      files and directories. Any ESTALE or EIO shows up as a "FAIL:" line.
# Exit code: 0 if every check passed, 1 otherwise.
set -u
M=${KVMNFS_MNT:-/mnt}
fails=0
F() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() { cat "$M/expect/$1.sha256"; }
shaof() { sha256sum "$@" | cut -d' ' -f1; }

cd "$M/d" || { echo "FAIL: cd $M/d"; exit 1; }
exec 3< held.bin || { echo "FAIL: open held.bin"; exit 1; }
dd bs=1048576 count=1 <&3 > /tmp/held.head 2>/dev/null || F "first read through fd 3"
exec 4<> rw.bin || { echo "FAIL: open rw.bin"; exit 1; }
echo before >&4 || F "write through fd 4 before the restart"
ls -la . sub | grep -v -e ' \.\.\?$' -e '^total ' > /tmp/ls.before || F "ls before"
stat -c '%n %i %s %h %u %g %a' held.bin sub sub/a.txt ../looked.bin > /tmp/stat.before || F "stat before"
[ "$(shaof ../looked.bin)" = "$(expect looked.bin)" ] || F "looked.bin before"
[ "$(shaof sub/a.txt)" = "$(expect a.txt)" ] || F "a.txt before"
sync; echo 3 > /proc/sys/vm/drop_caches     # what follows must ask the server
echo ready > "$M/guest-ready" && sync || F "write guest-ready"
echo "STEP ready"

# Bounded wait for the host's marker (the host restarts nascache meanwhile;
# the hard mount blocks and retries while it is down).
i=0
while [ ! -e "$M/restarted" ]; do
    i=$((i + 1))
    if [ $i -gt 1500 ]; then F "no restarted marker after 300 s"; break; fi
    sleep 0.2
done
echo "STEP saw-restarted $(cat "$M/restarted" 2>&1)"

cat <&3 > /tmp/held.rest || F "read rest of held.bin through the fd held across the restart"
[ "$(cat /tmp/held.head /tmp/held.rest | sha256sum | cut -d' ' -f1)" = "$(expect held.bin)" ] ||
    F "held.bin bytes read through the held fd"
echo after >&4 || F "write through fd 4 after the restart"
exec 4>&-
stat -c '%n %i %s %h %u %g %a' held.bin sub sub/a.txt ../looked.bin > /tmp/stat.after || F "stat after"
cmp /tmp/stat.before /tmp/stat.after || { F "stat (incl. inode numbers) changed across the restart"; cat /tmp/stat.before /tmp/stat.after; }
[ "$(shaof ../looked.bin)" = "$(expect looked.bin)" ] || F "looked.bin after"
[ "$(shaof sub/a.txt)" = "$(expect a.txt)" ] || F "a.txt after"
[ "$(shaof held.bin)" = "$(expect held.bin)" ] || F "held.bin reopened by path"
ls -la . sub | grep -v -e ' \.\.\?$' -e '^total ' | grep -v ' rw\.bin$' > /tmp/ls.after || F "ls after"
grep -v ' rw\.bin$' /tmp/ls.before | cmp - /tmp/ls.after || { F "listing changed"; cat /tmp/ls.before /tmp/ls.after; }
echo new-after-restart > new.txt || F "create through the cwd handle"
mkdir newdir && echo y > newdir/y || F "mkdir/create after the restart"
mv newdir/y newdir/z || F "rename after the restart"
[ "$(cat new.txt)" = new-after-restart ] || F "read back new.txt"
[ "$(cat newdir/z)" = y ] || F "read back newdir/z"
exec 3<&-
sync
dmesg | grep -iE 'nfs|stale|rpc' | grep -vi registered | tail -20 | sed 's/^/dmesg: /'
if dmesg | grep -qi stale; then F "the kernel logged a stale handle"; fi
echo "RESULT fails=$fails"
[ "$fails" = 0 ]
