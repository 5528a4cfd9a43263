#!/bin/sh
# Build benchmark (not run by CI): a three-stage Dockerfile with two independent stages
# and a context of 20,000 small files, built cold (--no-cache), rebuilt with nothing
# changed, and rebuilt after editing one copied file; with the builder's peak memory.
# The engine runs in a network namespace of its own and is stopped on every way out.
# Beside rcompose: `docker build` with BuildKit when Docker is installed (its daemon must
# run; the base image is imported into it offline), and buildah when installed.
#   [DOCKER=/usr/bin/docker] scripts/bench-build.sh [FILES]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
RCOMPOSE=${RCOMPOSE:-$here/target/release/rcompose}
files=${1:-20000}
work=$(mktemp -d /tmp/bench-build.XXXXXX)
root=$work/state
engine=
# The engine goes with the script however it ends (and is killed if it will not stop),
# before its state is removed.
stop_engine() {
    [ -n "$engine" ] || return 0
    kill "$engine" 2>/dev/null || return 0
    i=0
    while kill -0 "$engine" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$engine" 2>/dev/null || true
    wait "$engine" 2>/dev/null || true
}
trap 'stop_engine; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

# The base image: busybox-static's applets.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/ctx/src"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"

i=0
while [ $i -lt "$files" ]; do
    d=$work/ctx/src/d$((i / 500))
    [ -d "$d" ] || mkdir -p "$d"
    echo "file $i" > "$d/f$i"
    i=$((i + 1))
done
cat > "$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM bench/busybox AS tools
RUN mkdir -p /tools && for i in $(seq 1 200); do echo "tool $i" > /tools/t$i; done
FROM bench/busybox AS sources
COPY src/ /src/
RUN find /src -type f | wc -l > /count
FROM bench/busybox
COPY --from=tools /tools /opt/tools
COPY --from=sources /src /app/src
COPY --from=sources /count /app/count
CMD ["cat", "/app/count"]
DOCKERFILE
printf 'services:\n  app:\n    build: .\n    image: bench/app\n' > "$work/ctx/compose.yaml"
# A context is written before it is built, as a checkout is: files modified in the two
# seconds before a copy are never taken as unchanged since (the racy rule).
sleep 3
# ext4 makes new inodes slowly for a while after many were removed (it skips those
# removed recently): each tool starts on a settled file system, so that neither pays
# for what an earlier run removed.
# The disk settles too: with online discard, the trims of a large removal keep it busy
# for a while after; wait (up to two minutes) until it has been idle three seconds.
settle() {
    sync
    sleep "${SETTLE:-35}"
    dev=$(basename "$(findmnt -no SOURCE -T "$work" 2>/dev/null)" 2>/dev/null)
    stat=/sys/class/block/$dev/stat
    [ -n "$dev" ] && [ -r "$stat" ] || return 0
    quiet=0 waited=0 last=$(awk '{print $10}' "$stat")
    while [ $quiet -lt 3 ] && [ $waited -lt 120 ]; do
        sleep 1
        now=$(awk '{print $10}' "$stat")
        if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        last=$now waited=$((waited + 1))
    done
}

export RCOMPOSE_ROOT=$root RCOMPOSE_NO_AUTOSTART=1
# In a network namespace of its own: the build network it makes never touches the host's.
unshare --net sh -c 'ip link set lo up && exec "$0" daemon' "$RCOMPOSE" >"$work/engine.log" 2>&1 &
engine=$!
i=0
while [ ! -S "$root/run/rcompose.sock" ]; do
    if ! kill -0 "$engine" 2>/dev/null || [ $i -ge 400 ]; then
        echo "the engine did not start:" >&2; cat "$work/engine.log" >&2; exit 1
    fi
    sleep 0.05; i=$((i + 1))
done
"$RCOMPOSE" image import "$work/rootfs" bench/busybox:latest >/dev/null

rc_build() { (cd "$work/ctx" && "$RCOMPOSE" build -q "$@" >/dev/null); }
settle
t0=$(now); rc_build --no-cache; t1=$(now)
rc_build; t2=$(now)
# Unique to this run: Docker's cache outlives the script, and an edit it saw in an
# earlier run would be a cache hit, not a rebuild.
token=$(date +%s%N)
echo "edited $token" >> "$work/ctx/src/d0/f0"
rc_build; t3=$(now)
peak=$(grep VmHWM /proc/$engine/status | awk '{print $2}')
echo "rcompose  cold $(secs $t0 $t1) s  no-op $(secs $t1 $t2) s  one-file edit $(secs $t2 $t3) s  engine peak RSS ${peak} kB"

# A client with BuildKit built in (Debian's 20.10 has it; a newer one needs buildx).
DOCKER=${DOCKER:-docker}
if command -v "$DOCKER" >/dev/null && "$DOCKER" info >/dev/null 2>&1; then
    tar -C "$work/rootfs" -c . | "$DOCKER" import - bench/busybox:latest >/dev/null
    sed -i "s/edited $token\$//" "$work/ctx/src/d0/f0"
    db() { DOCKER_BUILDKIT=1 "$DOCKER" build -q "$@" "$work/ctx" >/dev/null; }
    settle
    t0=$(now); db --no-cache; t1=$(now); db; t2=$(now)
    echo "edited again $token" >> "$work/ctx/src/d0/f0"
    db; t3=$(now)
    echo "buildkit  cold $(secs $t0 $t1) s  no-op $(secs $t1 $t2) s  one-file edit $(secs $t2 $t3) s"
else
    echo "buildkit  (docker is not installed or its daemon is not running: skipped)"
fi
if command -v buildah >/dev/null; then
    b() { buildah bud -q --layers "$@" "$work/ctx" >/dev/null; }
    settle
    t0=$(now); b --no-cache; t1=$(now); b; t2=$(now)
    echo "buildah   cold $(secs $t0 $t1) s  no-op $(secs $t1 $t2) s"
else
    echo "buildah   (not installed: skipped)"
fi
