#!/usr/bin/env bash
# Image pull benchmark: time to pull (and, for rcompose, unpack) an image of many small
# files and one of a single large layer from a registry on loopback, beside
# `skopeo copy` of the same images to an OCI layout, in one run. Not part of CI.
#
#   [BENCH_DIR=/dev/shm] bash scripts/bench-images.sh [runs] [small files] [large layer MiB]
#
# Needs root, docker-registry, skopeo and python3 (apt-get install docker-registry skopeo).
set -euo pipefail
runs=${1:-3}
nsmall=${2:-20000}
big_mib=${3:-256}
cd "$(dirname "$0")/.."
cargo build --release -j2 -q
bin=$PWD/target/release/rcompose
work=$(mktemp -d "${BENCH_DIR:-/tmp}/rcompose-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${reg_pid:-}" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done

# Two OCI layouts, made with Python's standard library only.
python3 - "$work" "$nsmall" "$big_mib" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
work, nsmall, big_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
def layout(name, files, compress):
    d = os.path.join(work, name); os.makedirs(os.path.join(d, "blobs/sha256"))
    def put(b):
        h = hashlib.sha256(b).hexdigest(); open(os.path.join(d, "blobs/sha256", h), "wb").write(b); return "sha256:" + h
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for path, data in files():
            info = tarfile.TarInfo(path); info.size = len(data); info.mode = 0o644; t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue(); diff = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob = gzip.compress(raw, 1) if compress else raw
    ld = put(blob)
    cfg = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode(); cd = put(cfg)
    mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
        "layers": [{"mediaType": mt, "digest": ld, "size": len(blob)}]}).encode(); md = put(m)
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(m), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(os.path.join(d, "index.json"), "w"))
    open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
layout("small", lambda: ((f"d{i // 500}/f{i}", (b"x" * 64) + str(i).encode()) for i in range(nsmall)), True)
layout("large", lambda: [("big.bin", os.urandom(big_mib << 20))], False)
PY
for img in small large; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/$img:latest" "docker://127.0.0.1:$port/bench/$img:latest"
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
printf '%-28s %12s %12s %16s\n' "image ($runs runs, median)" "rcompose" "skopeo copy" "skopeo + tar -x"
for img in small large; do
  r=(); s=(); x=()
  for _ in $(seq "$runs"); do
    rm -rf "$work/root" "$work/out"; sync
    t0=$(now); RCOMPOSE_ROOT=$work/root "$bin" image pull -q "127.0.0.1:$port/bench/$img:latest" >/dev/null; t1=$(now)
    r+=("$(awk "BEGIN{print $t1 - $t0}")")
    t0=$(now); skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/$img:latest" "oci:$work/out:latest"; t1=$(now)
    s+=("$(awk "BEGIN{print $t1 - $t0}")")
    # The same copy, then GNU tar unpacking its layer: the fair peer of pull+unpack.
    rm -rf "$work/out" "$work/x"; mkdir -p "$work/x"; sync
    t0=$(now); skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/$img:latest" "oci:$work/out:latest"
    tar -xf "$(ls -S "$work"/out/blobs/sha256/* | head -1)" -C "$work/x"; t1=$(now)
    x+=("$(awk "BEGIN{print $t1 - $t0}")")
  done
  label=$([ "$img" = small ] && echo "$nsmall small files" || echo "one ${big_mib} MiB layer")
  printf '%-28s %11.3fs %11.3fs %15.3fs\n' "$label" "$(printf '%s\n' "${r[@]}" | median)" "$(printf '%s\n' "${s[@]}" | median)" "$(printf '%s\n' "${x[@]}" | median)"
done
echo "(rcompose: download, verify, unpack into its store; skopeo: download, verify into an OCI layout; + tar -x: and unpack)"
