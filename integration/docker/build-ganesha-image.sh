#!/usr/bin/env bash
# build-ganesha-image.sh: build the nfs-ganesha "origin NAS" test image without any image registry.
#
# Usage: build-ganesha-image.sh            prints the image reference (nascache-test/ganesha:<hash>)
#
# 1. A Debian root file system is made with `debootstrap --variant=minbase` from the mirror apt
#    already uses, with nfs-ganesha, nfs-ganesha-vfs and rpcbind installed (no recommends, no docs),
#    packed as $NASCACHE_DOCKER_CACHE/rootfs-<rootfs hash>.tar and `docker import`ed as
#    nascache-test/ganesha-rootfs:<rootfs hash>.
# 2. Dockerfile (FROM that image) adds ganesha-entrypoint.sh, ganesha-healthcheck.sh and
#    ganesha.conf.in, and is tagged nascache-test/ganesha:<image hash> and :latest.
#
# Both hashes are content hashes of the inputs: the rootfs hash covers the suite, mirror, package
# list and the recipe (the build_rootfs function's own text); the image hash covers the rootfs
# hash and every file copied into the image. A re-run with the same inputs only checks that the
# image exists and re-points :latest (well under a second). A lock serialises concurrent runs.
#
# Environment:
#   NASCACHE_DOCKER_CACHE  cache directory (default /var/tmp/nascache-docker)
#   GANESHA_SUITE          Debian suite (default bookworm)
#   GANESHA_MIRROR         Debian mirror (default: the first .../debian URI in apt's sources)
#   FORCE=1                rebuild the rootfs and the image even when cached
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${NASCACHE_DOCKER_CACHE:-/var/tmp/nascache-docker}
SUITE=${GANESHA_SUITE:-bookworm}
# netbase: /etc/services and /etc/rpc, without which rpcbind cannot bind ("Servname not supported").
PACKAGES=(nfs-ganesha nfs-ganesha-vfs rpcbind netbase)
REPO=nascache-test/ganesha
ROOTFS_REPO=nascache-test/ganesha-rootfs
IMAGE_FILES=(Dockerfile ganesha-entrypoint.sh ganesha-healthcheck.sh ganesha.conf.in)

log() { echo "build-ganesha-image: [${SECONDS}s] $*" >&2; }
die() { log "error: $*"; exit 1; }

CLEANUP=() PROC_MOUNT=''
cleanup() {
    if [ -n "$PROC_MOUNT" ] && mountpoint -q "$PROC_MOUNT"; then umount "$PROC_MOUNT"; fi
    if [ ${#CLEANUP[@]} -gt 0 ]; then rm -rf --one-file-system "${CLEANUP[@]}"; fi
}
trap cleanup EXIT

# apt_mirror prints the Debian mirror apt is configured with (deb822 .sources or one-line lists).
apt_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        [ -n "$uri" ] && { echo "${uri%/}"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        [ -n "$uri" ] && { echo "${uri%/}"; return; }
    done
    echo http://deb.debian.org/debian
}
MIRROR=${GANESHA_MIRROR:-$(apt_mirror)}

# build_rootfs DEST_TAR: debootstrap + packages + trimming, packed as a tar with numeric owners.
# Its text is part of the rootfs hash, so any change to the recipe makes a new rootfs.
build_rootfs() {
    local dest=$1 work root
    work=$(mktemp -d "$CACHE/rootfs-build.XXXXXX")
    root=$work/root
    # cleanup must not leave /proc mounted inside the cache when the build fails half-way.
    CLEANUP+=("$work")
    PROC_MOUNT=$root/proc
    log "debootstrap --variant=minbase $SUITE from $MIRROR"
    nice -n 10 debootstrap --variant=minbase --components=main "$SUITE" "$root" "$MIRROR" \
        >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

    # No documentation, manuals or translations, ever (also for packages installed later).
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-nascache-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/01-nascache" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
EOF
    # Maintainer scripts must not start daemons inside the build chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp /etc/hosts "$root/etc/hosts"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    mount -t proc proc "$root/proc"

    log "apt-get install ${PACKAGES[*]}"
    {
        chroot "$root" apt-get update &&
            DEBIAN_FRONTEND=noninteractive nice -n 10 chroot "$root" apt-get install -y "${PACKAGES[@]}" &&
            chroot "$root" apt-get clean
    } >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "apt-get install in the rootfs failed"; }
    umount "$root/proc"

    rm -f "$root/usr/sbin/policy-rc.d"
    rm -rf "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/cache/apt/* "${root:?}"/var/cache/debconf/*-old \
        "${root:?}"/var/log/* "${root:?}"/tmp/* "${root:?}"/dev/* "${root:?}"/run/*
    find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "${root:?}"/usr/share/man/* "${root:?}"/usr/share/info/* "${root:?}"/usr/share/locale/* "${root:?}"/usr/share/lintian/*
    # Docker supplies these at run time; the build host's copies must not leak into the image.
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
    echo ganesha >"$root/etc/hostname"

    tar --numeric-owner --xattrs -C "$root" -cf "$dest.tmp" . && mv "$dest.tmp" "$dest"
    rm -rf --one-file-system "$work"
}

sha() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, docker)"
command -v docker >/dev/null || die "docker not found"
mkdir -p "$CACHE"
for f in "${IMAGE_FILES[@]}"; do [ -r "$HERE/$f" ] || die "missing $HERE/$f"; done

ROOTFS_HASH=$( { echo "suite=$SUITE mirror=$MIRROR packages=${PACKAGES[*]}"; declare -f build_rootfs; } | sha)
# The build context is copied first and hashed from the copies, so that an edit made while a build
# runs cannot put one version of a file in an image tagged with another's hash.
ctx=$(mktemp -d)
CLEANUP+=("$ctx" "$ctx.log")
for f in "${IMAGE_FILES[@]}"; do cp -p "$HERE/$f" "$ctx/"; done
IMAGE_HASH=$( { echo "rootfs=$ROOTFS_HASH"; for f in "${IMAGE_FILES[@]}"; do echo "== $f"; cat "$ctx/$f"; done; } | sha)
IMAGE=$REPO:$IMAGE_HASH
ROOTFS_IMAGE=$ROOTFS_REPO:$ROOTFS_HASH
ROOTFS_TAR=$CACHE/rootfs-$ROOTFS_HASH.tar

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }
point_latest() {
    [ "$(image_id "$REPO:latest")" = "$(image_id "$IMAGE")" ] || docker tag "$IMAGE" "$REPO:latest"
}

# Fast path: nothing to do (no lock needed: an existing tag is only ever a complete image).
if [ "${FORCE:-0}" != 1 ] && [ -n "$(image_id "$IMAGE")" ]; then
    point_latest
    echo "$IMAGE"
    exit 0
fi

docker version >/dev/null 2>&1 || die "the Docker engine does not answer (docker version)"
exec 9>"$CACHE/.build.lock"
flock 9
if [ "${FORCE:-0}" = 1 ]; then
    rm -f "$ROOTFS_TAR"
    docker image rm -f "$IMAGE" "$ROOTFS_IMAGE" >/dev/null 2>&1 || true
fi
if [ -z "$(image_id "$IMAGE")" ]; then
    if [ -z "$(image_id "$ROOTFS_IMAGE")" ]; then
        [ -s "$ROOTFS_TAR" ] || build_rootfs "$ROOTFS_TAR"
        log "docker import $ROOTFS_TAR as $ROOTFS_IMAGE"
        docker import --change 'CMD ["/bin/bash"]' \
            --message "debootstrap --variant=minbase $SUITE + ${PACKAGES[*]}" \
            "$ROOTFS_TAR" "$ROOTFS_IMAGE" >/dev/null
    fi
    log "docker build $IMAGE"
    # The legacy builder: the engine has no buildx plugin, and FROM is a local image anyway.
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$ROOTFS_IMAGE" \
        --label "org.nascache.content-hash=$IMAGE_HASH" -t "$IMAGE" "$ctx" >"$ctx.log" 2>&1 ||
        { cat "$ctx.log" >&2; rm -f "$ctx.log"; die "docker build failed"; }
    rm -f "$ctx.log"
fi
point_latest
log "built $IMAGE"
# Superseded images and rootfs tarballs of this script go; images a container still uses stay.
for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO"; docker image ls --format '{{.Repository}}:{{.Tag}}' "$ROOTFS_REPO"); do
    case $old in "$IMAGE" | "$REPO:latest" | "$ROOTFS_IMAGE") ;; *) docker image rm "$old" >/dev/null 2>&1 || true ;; esac
done
docker image prune --force --filter "label=org.nascache.content-hash" >/dev/null 2>&1 || true  # untagged leftovers
for old in "$CACHE"/rootfs-*.tar; do [ "$old" = "$ROOTFS_TAR" ] || rm -f "$old"; done
echo "$IMAGE"
