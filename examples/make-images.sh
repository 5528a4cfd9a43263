#!/bin/sh
# Makes the base images the examples use, without any registry: `rcompose/busybox:latest`
# from the host's busybox-static (Debian package busybox-static), every applet linked.
# Idempotent: an image that exists is left alone (pass --force to make it again).
set -eu
RCOMPOSE=${RCOMPOSE:-$(dirname "$0")/../target/release/rcompose}
force=${1:-}
if [ "$force" != "--force" ] && "$RCOMPOSE" image inspect rcompose/busybox:latest >/dev/null 2>&1; then
    echo "rcompose/busybox:latest is there"
    exit 0
fi
[ -x /bin/busybox ] || { echo "needs /bin/busybox: apt-get install busybox-static" >&2; exit 1; }
fs=$(mktemp -d)
trap 'rm -rf "$fs"' EXIT
mkdir -p "$fs/bin" "$fs/etc" "$fs/tmp" "$fs/www" "$fs/data"
chmod 1777 "$fs/tmp"
cp /bin/busybox "$fs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$fs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n' > "$fs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$fs/etc/group"
"$RCOMPOSE" image import --change 'CMD ["sh"]' "$fs" rcompose/busybox:latest >/dev/null
echo "rcompose/busybox:latest made from $(/bin/busybox | head -1 | cut -d' ' -f1-2)"
