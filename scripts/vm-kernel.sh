#!/bin/sh
# Fetches, once, the kernel that the cgroup v2 test boots: Debian's 6.12 cloud kernel
# and its overlayfs module, into /var/cache/rcompose-vm (RCOMPOSE_VM_CACHE). Booted with
# nothing but a cgroup2 mount, it is a host with the unified hierarchy only, which this
# machine (cgroup v1 with a v2 mount) cannot be. The tests never download.
set -eu
dir=${RCOMPOSE_VM_CACHE:-/var/cache/rcompose-vm}
if [ -f "$dir/vmlinuz" ] && [ -f "$dir/overlay.ko" ]; then
  exit 0
fi
pkg=$(apt-cache depends linux-image-6.12-cloud-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
[ -n "$pkg" ] || { echo "vm-kernel: no linux-image-6.12-cloud-amd64 in the package lists (apt-get update?)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
(cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v "unsandboxed" || true)
deb=$(ls "$tmp"/*.deb)
dpkg-deb -x "$deb" "$tmp/x"
mkdir -p "$dir"
cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz.new"
mod=$(find "$tmp/x/lib/modules" -name 'overlay.ko*' | head -n 1)
case "$mod" in
  *.xz) xz -dc "$mod" > "$dir/overlay.ko.new" ;;
  *.zst) zstd -qdc "$mod" > "$dir/overlay.ko.new" ;;
  *) cp "$mod" "$dir/overlay.ko.new" ;;
esac
mv "$dir/vmlinuz.new" "$dir/vmlinuz"
mv "$dir/overlay.ko.new" "$dir/overlay.ko"
echo "vm-kernel: $pkg in $dir"
