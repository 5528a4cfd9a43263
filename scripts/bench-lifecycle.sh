#!/usr/bin/env bash
# Lifecycle benchmark: `up -d` and `down` wall times of a 10-service depends_on chain and
# of 50 independent services, and the memory (RSS) of the engine plus every container's
# init, with rcompose and, where installed, docker compose and podman-compose, in one
# run. Not part of CI. rcompose runs in a network namespace and state root of its own.
#
#   bash scripts/bench-lifecycle.sh [runs]
#
# Needs root, busybox-static and iproute2.
set -euo pipefail
runs=${1:-5}
cd "$(dirname "$0")/.."
cargo build --release -j2 -q
bin=$PWD/target/release/rcompose
work=$(mktemp -d /tmp/rcompose-lcbench.XXXXXX)
export RCOMPOSE_ROOT=$work/root
cleanup() {
  [ -f "$RCOMPOSE_ROOT/run/rcompose.pid" ] && kill "$(cat "$RCOMPOSE_ROOT/run/rcompose.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
RCOMPOSE=$bin sh examples/make-images.sh busybox >/dev/null

mk() { # mk DIR chain|wide N IMAGE
  mkdir -p "$1"
  {
    echo "services:"
    for i in $(seq 1 "$3"); do
      echo "  s$i:"
      echo "    image: $4"
      echo "    command: [sleep, '3600']"
      echo "    stop_signal: SIGKILL"
      if [ "$2" = chain ] && [ "$i" -gt 1 ]; then echo "    depends_on: [s$((i-1))]"; fi
    done
  } > "$1/compose.yaml"
}
mk "$work/chain" chain 10 rcompose/busybox:latest
mk "$work/wide" wide 50 rcompose/busybox:latest

ms() { local s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( ($(date +%s%N) - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Memory of the engine and all container inits: PSS (shared pages, such as the binary's
# text that every init maps from the same memfd, counted once overall) and RSS.
mem_kib() {
  local pid pss=0 rss=0
  for pid in $(cat "$RCOMPOSE_ROOT/run/rcompose.pid") $(cat "$RCOMPOSE_ROOT"/containers/*/state.json 2>/dev/null | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'); do
    pss=$(( pss + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0) ))
    rss=$(( rss + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0) ))
  done
  echo "PSS $pss KiB (RSS $rss KiB)"
}

run_rcompose() {
  ip link set lo up
  "$bin" ls >/dev/null  # start the engine outside the timings
  for stack in chain wide; do
    local ups=() downs=() mem=0
    for _ in $(seq "$runs"); do
      cd "$work/$stack"
      ups+=("$(ms "$bin" up -d)")
      sleep 2; mem=$(mem_kib)
      downs+=("$(ms "$bin" down -t 0)")
    done
    printf '%-16s %-6s up -d %5s ms   down %5s ms   engine+inits %s\n' rcompose "$stack" \
      "$(printf '%s\n' "${ups[@]}" | median)" "$(printf '%s\n' "${downs[@]}" | median)" "$mem"
  done
}
export -f run_rcompose ms median mem_kib
export bin work runs
unshare -n bash -c run_rcompose

peer() { # peer NAME CMD...
  local name=$1; shift
  for stack in chain wide; do
    sed -i 's|rcompose/busybox:latest|busybox:latest|' "$work/$stack/compose.yaml"
    cd "$work/$stack"
    local ups=() downs=()
    for _ in $(seq "$runs"); do
      ups+=("$(ms "$@" up -d)")
      downs+=("$(ms "$@" down -t 0)")
    done
    printf '%-16s %-6s up -d %5s ms   down %5s ms\n' "$name" "$stack" \
      "$(printf '%s\n' "${ups[@]}" | median)" "$(printf '%s\n' "${downs[@]}" | median)"
  done
}
if docker compose version >/dev/null 2>&1 && docker image inspect busybox:latest >/dev/null 2>&1; then
  peer "docker compose" docker compose
else
  echo "docker compose: not installed (or no busybox:latest image): skipped"
fi
if command -v podman-compose >/dev/null && podman image exists busybox:latest 2>/dev/null; then
  peer podman-compose podman-compose
else
  echo "podman-compose: not installed (or no busybox:latest image): skipped"
fi
