#!/bin/sh
# Makes the base images of the examples, without any container registry:
#   busybox  rcompose/busybox:latest, from the host's busybox-static (every applet linked);
#   debian   rcompose/debian-servers:bookworm, a Debian root filesystem made with
#            debootstrap from Debian's mirror, with nginx, Redis, PostgreSQL and busybox
#            installed from Debian's packages (examples/servers uses it).
#
# Usage: make-images.sh [--force] [--no-import] [--offline] [busybox|debian]...
#   With no names it makes both. It is idempotent: an image already in the store, made by
#   this recipe, is left alone (--force makes it again).
#   The Debian root filesystem is kept as a tarball in $RCOMPOSE_EXAMPLES_CACHE (default
#   /var/cache/rcompose-examples), named by a hash of its recipe, so that a second run, or
#   another state root, imports it without downloading anything. --no-import only fills
#   that cache; --offline never downloads (a missing tarball is an error).
# Environment: RCOMPOSE (the binary; default target/release/rcompose beside this script),
#   RCOMPOSE_ROOT (the state root the images go to), DEBIAN_MIRROR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
RCOMPOSE=${RCOMPOSE:-$here/../target/release/rcompose}
cache=${RCOMPOSE_EXAMPLES_CACHE:-/var/cache/rcompose-examples}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=nginx-light,redis-server,postgresql,busybox

force= import=yes offline= wanted=
for a in "$@"; do
    case "$a" in
        --force) force=yes ;;
        --no-import) import= ;;
        --offline) offline=yes ;;
        busybox | debian) wanted="$wanted $a" ;;
        *) echo "make-images.sh: unknown argument '$a' (--force, --no-import, --offline, busybox, debian)" >&2; exit 2 ;;
    esac
done
[ -n "$wanted" ] || wanted="busybox debian"

# Whether NAME is in the store with the recipe label RECIPE.
have() {
    [ -z "$force" ] && "$RCOMPOSE" image inspect "$1" 2>/dev/null | grep -q "$2"
}

make_busybox() {
    ref=rcompose/busybox:latest
    [ -x /bin/busybox ] || { echo "needs /bin/busybox: apt-get install busybox-static" >&2; exit 1; }
    recipe=busybox-$(sha256sum /bin/busybox | cut -c1-16)
    [ -n "$import" ] || return 0
    if have "$ref" "$recipe"; then
        echo "$ref is there"
        return 0
    fi
    fs=$(mktemp -d)
    mkdir -p "$fs/bin" "$fs/etc" "$fs/tmp" "$fs/www" "$fs/data"
    chmod 1777 "$fs/tmp"
    cp /bin/busybox "$fs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$fs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n' > "$fs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$fs/etc/group"
    "$RCOMPOSE" image import --change 'CMD ["sh"]' --change "LABEL org.rcompose.examples.recipe=$recipe" \
        "$fs" "$ref" >/dev/null
    rm -rf "$fs"
    echo "$ref made from $(/bin/busybox | head -1 | cut -d' ' -f1-2)"
}

# Unmounts whatever is mounted under DIR, deepest first.
unmount_under() {
    awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
}

make_debian() {
    ref=rcompose/debian-servers:$suite
    recipe=debian-$(printf '%s %s v2' "$suite" "$packages" | sha256sum | cut -c1-16)
    tarball=$cache/$recipe.tar
    if [ -n "$import" ] && have "$ref" "$recipe"; then
        echo "$ref is there"
        return 0
    fi
    if [ ! -s "$tarball" ] || [ -n "$force" ]; then
        [ -z "$offline" ] || { echo "no $tarball, and --offline: run examples/make-images.sh debian first" >&2; exit 1; }
        command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 1; }
        [ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
        mkdir -p "$cache"
        work=$(mktemp -d "$cache/build.XXXXXX")
        # Whatever happens, no build directory is left half made, nor a mount that
        # debootstrap made in it (/proc, /sys) when it stopped midway.
        trap 'unmount_under "$work"; rm -rf "$work"' EXIT INT TERM
        echo "debootstrap $suite with $packages from $mirror (about a minute)..."
        if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" > "$work/log" 2>&1; then
            tail -20 "$work/log" >&2
            echo "debootstrap failed (the log's end is above)" >&2
            exit 1
        fi
        # What a container does not need: package caches, documentation, manuals, translations.
        rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* \
            "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/info" \
            "$work/root/usr/share/locale"
        tar -C "$work/root" --numeric-owner -cf "$work/image.tar" .
        mv "$work/image.tar" "$tarball"
        rm -rf "$work"
        trap - EXIT INT TERM
    fi
    [ -n "$import" ] || { echo "$tarball is ready"; return 0; }
    "$RCOMPOSE" image import --change 'CMD ["bash"]' --change "LABEL org.rcompose.examples.recipe=$recipe" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$tarball" "$ref" >/dev/null
    echo "$ref made from $tarball"
}

for w in $wanted; do
    "make_$w"
done
