# posix.sh - the POSIX workload of the integration suite.
#
# Runs in the guest (Linux kernel NFSv3 client) under run-guest.sh with
# KVMNFS_IN_HOST=1, i.e. with the host's bash, coreutils, python3 and setpriv,
# cwd = the NFS mount. It exercises what a data loader and a training job do to
# a file system and prints a NORMALISED TRANSCRIPT on stdout: one line per check,
# "T <check>: <observed result>", holding only what must be the same on every
# correct NFSv3 server over the same kind of origin (no inode numbers, no
# server-chosen times, no free-space figures). File contents are generated from
# fixed seeds, so the checksums in the transcript are the same on every run.
# The integration test runs this script against nfs-ganesha and against
# nascache and requires the two transcripts to be identical.
#
# Lines containing " FAIL" mark a broken hard expectation (wrong bytes, a count
# that is off); everything else is an observation compared across servers.
# Leaves $W/manifest.sha256 (paths relative to $W/files) and $W/owners (path
# uid gid mode) on the export so the host can re-verify them at the origin.
set -u
export LC_ALL=C
M=${KVMNFS_MNT:-/mnt}
W=$M/posix
NOBODY=1000        # the unprivileged user for permission checks

T() { echo "T $*"; }
note() { echo "# $*"; }          # log only, not part of the transcript
dropcache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# st PATH: normalised lstat (type, mode incl. special bits, nlink, owner, and
# size for everything but directories, whose size is the origin's business)
st() {   # one stat exec per call: the guest is emulated, every exec counts
    local s IFS='|'; s=$(stat -c '%F|%04a|%h|%u|%g|%s' "$1" 2>&1) || { echo "stat-error ${s##*: }"; return; }
    set -- $s
    if [ "$1" = directory ]; then echo "$1 mode=$2 nlink=$3 uid=$4 gid=$5"
    else echo "$1 mode=$2 nlink=$3 uid=$4 gid=$5 size=$6"; fi
}
# try NAME CMD...: runs CMD, prints "T NAME: ok" or "T NAME: err <strerror>"
try() {
    local name=$1 out; shift
    if out=$("$@" 2>&1 >/dev/null); then T "$name: ok"; else T "$name: err ${out##*: }"; fi
}
# as_user NAME CMD...: like try, as uid/gid $NOBODY with no supplementary groups
as_user() {
    local name=$1; shift
    try "$name" setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- "$@"
}
sha() { sha256sum "$1" | cut -c1-16; }

rm -rf "$W" || { echo "cannot clean $W"; exit 2; }
mkdir -p "$W/files" || { echo "cannot create $W"; exit 2; }
cd "$W" || exit 2
note "kernel $(uname -r), mount: $(grep " $M " /proc/mounts | cut -d' ' -f4)"
t0=$SECONDS

# --- 1. files of many sizes, with checksums --------------------------------
# python writes half of them directly to NFS with odd write sizes (unaligned
# WRITEs), the other half is generated in /tmp and copied with cp (large
# WRITEs). The page cache is dropped before everything is read back.
python3 - "$W/files" <<'EOF'
import hashlib, os, random, sys
dst = sys.argv[1]
sizes = [0, 1, 2, 511, 512, 513, 4095, 4096, 4097, 65535, 65536, 65537,
         131072, 1000000, 1048575, 1048576, 1048577, 2097169, 4194304, 8392703]
rnd = random.Random(20261125)
sizes += [rnd.randrange(0, 1 << 20) for _ in range(10)]
os.makedirs("/tmp/src", exist_ok=True)
with open(os.path.join(os.path.dirname(dst), "manifest.sha256"), "w") as man:
    for i, n in enumerate(sizes):
        data = random.Random(i).randbytes(n)
        name = "f%02d" % i
        if i % 2:
            with open(os.path.join(dst, name), "wb", buffering=0) as f:
                step = 1000 + 7 * i
                for off in range(0, n, step):
                    f.write(data[off:off + step])
        else:
            with open(os.path.join("/tmp/src", name), "wb") as f:
                f.write(data)
        man.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name))
EOF
cp /tmp/src/* "$W/files/" || T "files: FAIL cp"
rm -rf /tmp/src
dropcache
n=0 bad=0 bytes=0
while read -r sum name; do
    n=$((n + 1)); got=$(sha256sum "files/$name" | cut -d' ' -f1); sz=$(stat -c %s "files/$name")
    bytes=$((bytes + sz))
    if [ "$got" = "$sum" ]; then T "file $name size=$sz sha=${sum:0:16}"
    else bad=$((bad + 1)); T "file $name size=$sz FAIL sha $got want $sum"; fi
done < manifest.sha256
T "files: $n files, $bytes bytes, $bad bad after a cold read"
note "files done at ${SECONDS}s"

# --- 2. append, overwrite in place, truncate --------------------------------
f=$W/edit
printf 'aaaaaaaaaa' > "$f"; printf 'bbbbb' >> "$f"
printf 'XY' | dd of="$f" bs=1 seek=3 conv=notrunc 2>/dev/null
dropcache; T "edit append+overwrite: $(cat "$f")"
truncate -s 4 "$f"; dropcache; T "edit truncate shrink: $(cat "$f") $(st "$f")"
truncate -s 100000 "$f"; dropcache; T "edit truncate grow: $(st "$f") sha=$(sha "$f")"
: > "$f"; T "edit O_TRUNC: $(st "$f")"
cp files/f14 big; printf '%10000s' | tr ' ' Z | dd of=big bs=1 seek=500000 conv=notrunc 2>/dev/null
dropcache; T "edit overwrite 10000 bytes at 500000 in 1 MiB: $(st big) sha=$(sha big)"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.pwrite(fd, b"tail", 3<<20); os.close(fd)' big
dropcache; T "edit pwrite past EOF (hole): $(st big) sha=$(sha big)"
T "edit hole reads zeros: nonzero=$(dd if=big bs=1M skip=1 count=2 2>/dev/null | tr -d '\0' | wc -c) tail=$(tail -c 4 big)"
truncate -s 5G sparse; T "edit 5 GiB sparse: $(st sparse) last=$(tail -c 4096 sparse | tr -d '\0' | wc -c)"
rm -f sparse

note "section at ${SECONDS}s"
# --- 3. namespace: mkdir, rename, rmdir ---------------------------------------
mkdir -p ns/a/b/c ns/d
echo one > ns/a/b/c/x; echo two > ns/a/y
try "rename file across dirs" mv ns/a/b/c/x ns/d/x2
try "rename dir" mv ns/a/b ns/d/b
T "tree after renames: $(cd ns && find . | sort | tr '\n' ' ')"
T "renamed file: $(cat ns/d/x2) $(st ns/d/x2)"
T "dir nlink: ns=$(stat -c %h ns) d=$(stat -c %h ns/d) d/b=$(stat -c %h ns/d/b)"
echo old > ns/a/t; ln ns/a/t ns/a/t.link; echo new > ns/a/t.new
try "rename over existing file" mv -f ns/a/t.new ns/a/t
dropcache
T "rename over existing: target=$(cat ns/a/t) old-inode-link=$(cat ns/a/t.link) $(st ns/a/t.link) t.new-gone=$([ -e ns/a/t.new ] && echo no || echo yes)"
mkdir -p ns/e1 ns/e2 ns/full/sub ns/mv
echo z > ns/file
python3 - "$W/ns" <<'EOF' | sed 's/^/T /'
import errno, os, sys
os.chdir(sys.argv[1])
def t(name, fn, *a):
    try:
        fn(*a); print("%s: ok" % name)
    except OSError as e:
        print("%s: err %s" % (name, errno.errorcode.get(e.errno, e.errno)))
t("rename dir over empty dir", os.rename, "e1", "e2")
t("rename dir over non-empty dir", os.rename, "mv", "full")
t("rename file over dir", os.rename, "file", "full")
t("rename dir over file", os.rename, "mv", "file")
t("rename dir into itself", os.rename, "mv", "mv/inner")
t("rename to same name", os.rename, "file", "file")
t("rename missing", os.rename, "nope", "nope2")
t("rmdir non-empty", os.rmdir, "full")
t("rmdir file", os.rmdir, "file")
t("unlink dir", os.unlink, "full")
t("mkdir existing", os.mkdir, "full")
t("create in missing dir", os.open, "missing/x", os.O_CREAT | os.O_WRONLY)
t("lookup through file", os.stat, "file/x")
t("name too long", os.open, "n" * 256, os.O_CREAT | os.O_WRONLY)
t("name of 255 bytes", lambda: os.close(os.open("n" * 255, os.O_CREAT | os.O_WRONLY)))
EOF
T "ns state: $(cd ns && find . | sort | tr '\n' ' ')"
try "rmdir empty" rmdir ns/e2
try "rm -rf tree" rm -rf ns
T "ns gone: $([ -e ns ] && echo no || echo yes)"

# --- 4. hard links and symlinks ----------------------------------------------
mkdir lk; echo data > lk/h
ln lk/h lk/h2; ln lk/h lk/h3
T "hard links: $(st lk/h)"
rm lk/h2; T "hard link removed: $(st lk/h3) $(cat lk/h3)"
echo more >> lk/h3; dropcache; T "write via link visible: $(cat lk/h | tr '\n' ' ')"
try "hard link to dir" ln lk lk/dirlink
try "hard link exists" ln lk/h lk/h3
ln -s ../files/f12 lk/s; ln -s nowhere lk/dangling; ln -s .. lk/up
ln -s "$(printf 'x%.0s' $(seq 1000))" lk/long; ln -s loop2 lk/loop1; ln -s loop1 lk/loop2
T "symlink: $(st lk/s) -> $(readlink lk/s) sha-through=$(sha lk/s)"
T "dangling: $(st lk/dangling) target=$(readlink lk/dangling) stat-L=$(stat -L lk/dangling >/dev/null 2>&1 && echo ok || echo fails)"
T "symlink to dir: $(ls lk/up/ | sort | tr '\n' ' ')"
T "long symlink: $(st lk/long) len=$(readlink lk/long | wc -c)"
try "symlink loop" cat lk/loop1
chown -h 1234:5678 lk/s; T "lchown symlink: $(st lk/s) target-owner=$(stat -L -c %u:%g lk/s)"
try "symlink exists" ln -s x lk/s
dropcache; T "links after cache drop: $(cd lk && for x in *; do echo -n "$x=[$(st "$x")] "; done)"

note "section at ${SECONDS}s"
# --- 5. ownership, modes, special bits, times ---------------------------------
mkdir pm; for m in 0000 0400 0644 0755 4755 2755 6755 1755 0777; do echo "$m" > pm/m$m; chmod $m pm/m$m; done
dropcache; for m in 0000 0400 0644 0755 4755 2755 6755 1755 0777; do T "chmod $m: $(st pm/m$m)"; done
mkdir pm/sticky pm/sgid; chmod 1777 pm/sticky; chown 0:5678 pm/sgid; chmod 2775 pm/sgid
T "sticky dir: $(st pm/sticky)"; T "setgid dir: $(st pm/sgid)"
echo x > pm/sgid/child; mkdir pm/sgid/subdir
T "file in setgid dir: $(st pm/sgid/child)"; T "dir in setgid dir: $(st pm/sgid/subdir)"
echo c > pm/own; chown 1234:5678 pm/own; T "chown: $(st pm/own)"
chown 4321 pm/own; T "chown uid only: $(st pm/own)"
chgrp 8765 pm/own; T "chgrp: $(st pm/own)"
chmod 6755 pm/own; chown 1111 pm/own; T "chown clears setuid: $(st pm/own)"
T "root reads mode 0000: $(cat pm/m0000)"
touch -m -d '2001-02-03 04:05:06.123456789 UTC' pm/m0644
touch -a -d '1999-12-31 23:59:59.5 UTC' pm/m0644
dropcache; T "utimes: mtime=$(stat -c %.9Y pm/m0644) atime=$(stat -c %.9X pm/m0644)"
touch -d '@0' pm/m0755; T "utimes epoch: mtime=$(stat -c %Y pm/m0755)"
touch -d '2038-01-19 03:14:08 UTC' pm/m0777; T "utimes past 2038: mtime=$(stat -c %Y pm/m0777)"
a=$(stat -c %Y pm/m0400); touch pm/m0400; b=$(stat -c %Y pm/m0400)
T "touch now moves mtime forward: $([ "$b" -ge "$a" ] && echo yes || echo no)"

# --- 6. an unprivileged user --------------------------------------------------
mkdir pm/rootdir; chmod 0755 pm/rootdir; echo secret > pm/rootdir/r644; chmod 0644 pm/rootdir/r644
echo hidden > pm/rootdir/r600; chmod 0600 pm/rootdir/r600
as_user "user reads root 0644" cat pm/rootdir/r644
as_user "user writes root 0644" sh -c "echo x >> pm/rootdir/r644"
as_user "user truncates root 0644" truncate -s 0 pm/rootdir/r644
as_user "user reads root 0600" cat pm/rootdir/r600
as_user "user creates in root 0755 dir" sh -c ": > pm/rootdir/new"
as_user "user removes from root 0755 dir" rm -f pm/rootdir/r644
as_user "user chmods root file" chmod 0777 pm/rootdir/r644
as_user "user chowns own file" sh -c ": > pm/sticky/mine && chown 0 pm/sticky/mine"
T "user-created file: $(st pm/sticky/mine)"
as_user "user sets times on root file" touch -d '2001-01-01' pm/rootdir/r644
echo root > pm/sticky/rootfile
as_user "user removes root file in sticky dir" rm -f pm/sticky/rootfile
as_user "user renames root file in sticky dir" mv pm/sticky/rootfile pm/sticky/moved
as_user "user removes own file in sticky dir" rm -f pm/sticky/mine
as_user "user mkdir in sticky dir" mkdir pm/sticky/udir
T "after user ops: r644=$(cat pm/rootdir/r644) $(st pm/rootdir/r644) rootfile=$(cat pm/sticky/rootfile) udir=[$(st pm/sticky/udir)]"
T "unchanged after denied writes: $(cd pm/rootdir && ls | sort | tr '\n' ' ')"

# --- 7. special files ---------------------------------------------------------
mkfifo -m 0640 pm/fifo; T "mkfifo: $(st pm/fifo)"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' pm/sock
T "socket node: $(st pm/sock)"
(sleep 0.1; echo through-fifo > pm/fifo) & T "fifo is local to the client: $(cat pm/fifo)"; wait
try "rm special files" rm pm/fifo pm/sock

note "section at ${SECONDS}s"
# --- 8. deep and wide trees ---------------------------------------------------
d=deep; for i in $(seq 1 48); do d=$d/level$i; done
mkdir -p "$d"; echo bottom > "$d/leaf"
dropcache; T "deep tree: $(cat "$d/leaf") dirs=$(find deep -type d | wc -l) depth=$(echo "$d" | tr -cd / | wc -c)"
try "rm deep tree" rm -rf deep
mkdir wide; cd wide
for i in $(seq 0 999); do : > "e$i"; done
for i in $(seq 0 19); do mkdir "d$i"; : > "d$i/x"; done
cd "$W"; dropcache
T "wide tree: ls=$(ls wide | wc -l) ls-l-files=$(ls -l wide | grep -c '^-') ls-l-dirs=$(ls -l wide | grep -c '^d') find=$(find wide | wc -l) nlink=$(stat -c %h wide)"
T "wide names: $(ls wide | sha256sum | cut -c1-16)"
note "wide tree listed at ${SECONDS}s"
try "rm wide tree" rm -rf wide

note "section at ${SECONDS}s"
# --- 9. concurrent readers ----------------------------------------------------
dropcache
pids=()
for i in $(seq 1 8); do
    name=$(printf 'f%02d' $(( i % 3 == 0 ? 18 : 19 + i )))
    (sum=$(sha256sum "files/$name" | cut -d' ' -f1); grep -q "^$sum  $name\$" manifest.sha256 && echo ok > "/tmp/cr$i" || echo bad > "/tmp/cr$i") &
    pids+=($!)
done
wait "${pids[@]}"
T "8 concurrent readers (2 on one file): $(cat /tmp/cr* | sort | uniq -c | tr -s ' ')"
rm -f /tmp/cr*
dropcache
python3 - files/f19 <<'EOF' | sed 's/^/T /'
import hashlib, os, random, sys, threading
path = sys.argv[1]
want = random.Random(19).randbytes(os.stat(path).st_size)
fd = os.open(path, os.O_RDONLY)
bad = []
def reader(k):
    r = random.Random(k)
    for _ in range(200):
        off = r.randrange(0, len(want)); n = r.randrange(1, 65536)
        if os.pread(fd, n, off) != want[off:off + n]:
            bad.append((off, n))
ts = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("8 threads x 200 preads on one fd: %s" % ("ok" if not bad else "FAIL %d bad" % len(bad)))
EOF

# --- 10. exclusive create -----------------------------------------------------
python3 - "$W" <<'EOF' | sed 's/^/T /'
import errno, os, sys, threading
os.chdir(sys.argv[1])
def excl(p, mode=0o640):
    try:
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)); return "ok"
    except OSError as e:
        return "err " + errno.errorcode.get(e.errno, str(e.errno))
print("O_EXCL create: " + excl("excl"))
print("O_EXCL create again: " + excl("excl"))
print("O_EXCL over dangling symlink: " + excl("lk/dangling"))
st = os.stat("excl")
print("O_EXCL file: mode=%04o size=%d uid=%d gid=%d" % (st.st_mode & 0o7777, st.st_size, st.st_uid, st.st_gid))
res = []
lock = threading.Lock()
def racer():
    r = excl("race")
    with lock: res.append(r)
ts = [threading.Thread(target=racer) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("8 racing O_EXCL creates: %d ok, %d EEXIST" % (res.count("ok"), res.count("err EEXIST")))
fd = os.open("excl", os.O_CREAT | os.O_WRONLY, 0o600); os.close(fd)
print("O_CREAT on existing keeps mode: %04o" % (os.stat("excl").st_mode & 0o7777))
EOF

note "section at ${SECONDS}s"
# --- 11. owners file for the host, final listing ---------------------------------
find . -path ./files -prune -o -print | sort | while read -r p; do
    echo "$p $(stat -c '%u %g %04a' "$p")"
done > /tmp/owners
cp /tmp/owners owners
T "final tree: $(find . | wc -l) entries"
T "final tree listing: $(find . -printf '%P %y %m %n %U %G\n' | grep -v '^ ' | sort | sha256sum | cut -c1-16)"
sync
note "workload done in $((SECONDS - t0))s"
T "end"
