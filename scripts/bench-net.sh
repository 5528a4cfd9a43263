#!/usr/bin/env bash
# Network benchmark, in one run: DNS (queries per second and p50/p99 latency for a
# service name, asked from a container's network namespace) and TCP throughput
# (iperf3, a few seconds each): a plain veth pair between two namespaces as the
# baseline, container to container over a project network, the host to a published
# port through the engine's proxy (loopback), and through DNAT (a client in a namespace
# a veth away, standing for another machine). Not part of CI. Everything runs in
# namespaces of its own; no traffic leaves them.
#
#   bash scripts/bench-net.sh [seconds]
#
# Needs root, busybox-static, iproute2, nftables and iperf3 (installed if missing).
set -euo pipefail
secs=${1:-3}
cd "$(dirname "$0")/.."
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null
cargo build --release -j2 -q
cargo build --release -j2 -q -p netd --example dns_load
bin=$PWD/target/release/rcompose
dns_load=$PWD/target/release/examples/dns_load
work=$(mktemp -d /tmp/rcompose-netbench.XXXXXX)
export RCOMPOSE_ROOT=$work/root
ns=rcb$$
cleanup() {
  (cd "$work/p" 2>/dev/null && "$bin" down -t 0 >/dev/null 2>&1) || true
  [ -f "$RCOMPOSE_ROOT/run/rcompose.pid" ] && kill "$(cat "$RCOMPOSE_ROOT/run/rcompose.pid")" 2>/dev/null || true
  pkill -f "iperf3 -s -p 52" 2>/dev/null || true
  for n in "$ns" "${ns}a" "${ns}b" "${ns}o"; do ip netns del "$n" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$work"
}
trap cleanup EXIT
RCOMPOSE=$bin sh examples/make-images.sh busybox >/dev/null

gbit() { # the receiver's rate of an iperf3 client run, in Gbit/s
  "$@" -t "$secs" -f g 2>/dev/null | awk '/receiver/ {print $(NF-2), $(NF-1)}'
}

# Baseline: a bare veth pair.
ip netns add "${ns}a"; ip netns add "${ns}b"
ip -n "${ns}a" link add va type veth peer name vb netns "${ns}b"
ip -n "${ns}a" addr add 10.231.0.1/24 dev va; ip -n "${ns}a" link set va up
ip -n "${ns}b" addr add 10.231.0.2/24 dev vb; ip -n "${ns}b" link set vb up
ip netns exec "${ns}b" iperf3 -s -p 5201 -D
sleep 0.3
veth=$(gbit ip netns exec "${ns}a" iperf3 -c 10.231.0.2 -p 5201)

# The engine in a namespace of its own, and an "outside" namespace a veth away.
ip netns add "$ns"; ip -n "$ns" link set lo up
ip netns add "${ns}o"; ip -n "${ns}o" link set lo up
ip -n "$ns" link add rcbo type veth peer name rcbw netns "${ns}o"
ip -n "$ns" addr add 198.18.9.1/24 dev rcbo; ip -n "$ns" link set rcbo up
ip -n "${ns}o" addr add 198.18.9.2/24 dev rcbw; ip -n "${ns}o" link set rcbw up
mkdir -p "$work/p"
cat > "$work/p/compose.yaml" <<'EOF'
name: netbench
services:
  a:
    image: rcompose/busybox:latest
    command: [sleep, '3600']
    stop_signal: SIGKILL
  b:
    image: rcompose/busybox:latest
    command: [sleep, '3600']
    stop_signal: SIGKILL
    ports: ["5202:5202"]
EOF
cd "$work/p"
nsenter --net=/run/netns/"$ns" "$bin" daemon > "$work/engine.log" 2>&1 &
for _ in $(seq 100); do [ -S "$RCOMPOSE_ROOT/run/rcompose.sock" ] && break; sleep 0.1; done
"$bin" up -d >/dev/null 2>&1
pid_of() { # the init PID of a service's container
  local id
  id=$("$bin" ps -q "$1" | head -1)
  sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$RCOMPOSE_ROOT/containers/$id/state.json"
}
a=$(pid_of a); b=$(pid_of b)
b_ip=$(nsenter -t "$b" -n ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
gw=$(nsenter -t "$a" -n ip route | awk '/default/ {print $3}')
# iperf3 servers in b's namespace: one for containers, one behind the published port.
nsenter -t "$b" -n iperf3 -s -p 5201 -D
nsenter -t "$b" -n iperf3 -s -p 5202 -D
sleep 0.3
c2c=$(gbit nsenter -t "$a" -n iperf3 -c "$b_ip" -p 5201)
proxy=$(gbit nsenter --net=/run/netns/"$ns" iperf3 -c 127.0.0.1 -p 5202)
dnat=$(gbit ip netns exec "${ns}o" iperf3 -c 198.18.9.1 -p 5202)
dns=$(nsenter -t "$a" -n "$dns_load" "$gw" b 20000 16)

echo "rcompose network benchmark ($(nproc) CPUs, iperf3 ${secs}s each)"
printf '  %-40s %s\n' "plain veth pair (baseline)" "$veth"
printf '  %-40s %s\n' "container to container (bridge)" "$c2c"
printf '  %-40s %s\n' "host to published port, proxy (loopback)" "$proxy"
printf '  %-40s %s\n' "published port from outside, DNAT" "$dnat"
printf '  %s\n' "$dns"
# The peer: Docker's bridge, proxy and DNAT would need a Docker engine to measure.
if docker info >/dev/null 2>&1; then
  echo "  docker: an engine runs here, but its network paths are not measured by this script yet"
else
  echo "  docker: no Docker engine runs here (only its client, if any): no figures beside these"
fi
