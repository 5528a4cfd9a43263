#!/usr/bin/env bash
# Container runtime benchmark: create-to-exec and a whole create-start-stop-remove cycle
# of `busybox true`, median of many runs, beside `runc run` of the same busybox root
# filesystem, in one run. Not part of CI.
#
#   bash scripts/bench-runtime.sh [runs]
#
# Needs root, busybox-static and runc (apt-get install busybox-static runc).
set -euo pipefail
runs=${1:-50}
cd "$(dirname "$0")/.."
cargo build --release -j2 -q
cargo build --release -j2 -q -p runtime --example bench_runtime
work=$(mktemp -d /tmp/rcompose-rtbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"

./target/release/examples/bench_runtime "$PWD/target/release/rcompose" "$rootfs" "$runs"

if command -v runc >/dev/null; then
  bundle=$work/bundle
  mkdir -p "$bundle"
  cp -a "$rootfs" "$bundle/rootfs"
  (cd "$bundle" && runc spec)
  python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/busybox", "true"]
json.dump(c, open(p, "w"))
PY
  times=()
  for i in $(seq "$runs"); do
    t0=$(date +%s%N)
    runc --root "$work/runc-state" run --bundle "$bundle" "bench$i" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=("$(( (t1 - t0) / 1000 ))")
  done
  med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  awk -v us="$med" 'BEGIN { printf "runc run full cycle     median %.2f ms\n", us / 1000 }'
else
  echo "runc not installed: apt-get install runc for the side-by-side figure"
fi
