#!/usr/bin/env bash
# `airgap build` against the peer pipeline, on the same images from the same local registry:
#   airgap build (empty cache)   vs   skopeo copy --all of each image into ONE OCI layout + tar -c | zstd -T0 -3
# Prints wall time, peak RSS, output size and the ratios (airgap / peer: below 1 means airgap is better).
#
# Usage: scripts/bench-build.sh [TOTAL_MIB=400]
#   AIRGAP_BIN=PATH to measure that binary instead of building one.
#   PROFILE=debug to measure the debug build (default: release; `cargo build --release` once, a few minutes).
#   JOBS=N        airgap's --jobs (default 8).
#   SEED_DIR=DIR  keep the seeded registry storage in DIR and reuse it on the next run (seeding takes minutes).
# Needs: docker-registry, skopeo, zstd, tar, openssl, python3, /usr/bin/time (Debian package `time`), bc.
# Traffic stays on 127.0.0.1.
set -euo pipefail
total_mib=${1:-400}
profile=${PROFILE:-release}
jobs=${JOBS:-8}
cd "$(dirname "$0")/.."
flags=()
[ "$profile" = release ] && flags=(--release)
if [ -n "${AIRGAP_BIN:-}" ]; then
    bin=$AIRGAP_BIN   # a binary built elsewhere (e.g. the previous version, to compare)
else
    cargo build -q "${flags[@]}" --bin airgap
    bin=$PWD/target/$profile/airgap
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/airgap-bench-build.XXXXXX")
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# 1. A docker-registry on a free loopback port.
storage=${SEED_DIR:-$work/registry}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $storage}}
http: {addr: $reg}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done   # poll until it listens

# 2. A Kubernetes-sized image set: 12 two-platform images (linux/amd64 + linux/arm64), multi-layer, layer
#    sizes spread like the real ones (a small base layer, a few mid-size, one big), summing to ~TOTAL_MIB.
names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy coredns pause etcd flannel flannel-cni-plugin ingress-controller webhook-certgen registry)
weights=(14 13 9 12 6 1 8 8 2 16 3 8)   # relative sizes, sum 100
mib=$((1024 * 1024))
seed_start=$(date +%s)
if [ -f "$storage/.seeded-$total_mib" ]; then
    echo "reusing the seeded registry storage in $storage"
else
echo "seeding $reg with ${#names[@]} images (~$total_mib MiB over 2 platforms)..."
for i in "${!names[@]}"; do
    per_platform=$((total_mib * mib * ${weights[$i]} / 100 / 2))
    sizes="$((per_platform / 20)),$((per_platform / 5)),$((per_platform / 4)),$((per_platform - per_platform / 20 - per_platform / 5 - per_platform / 4))"
    bash scripts/lib/make-image.sh "$work/src" "${names[$i]}" linux/amd64,linux/arm64 "$sizes" "bench$i" >/dev/null
    skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/src:${names[$i]}" "docker://$reg/bench/${names[$i]}:v1"
done
rm -rf "$work/src"
touch "$storage/.seeded-$total_mib"
echo "seeded in $(( $(date +%s) - seed_start ))s"
fi

# 3. The manifest and a key.
{
    echo "name: bench"; echo "version: 1.0.0"; echo "platforms: [linux/amd64, linux/arm64]"; echo "images:"
    for n in "${names[@]}"; do echo "  - $reg/bench/$n:v1"; done
} > "$work/bench.yaml"
"$bin" --quiet keygen --out-dir "$work/keys" >/dev/null

declare -A WALL RSS
measure() { # key label command...
    local key=$1 label=$2; shift 2
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    /usr/bin/time -v "$@" >"$work/time.out" 2>"$work/time.err" || { cat "$work/time.err"; exit 1; }
    RSS[$key]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.err")
    WALL[$key]=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.err")
    printf '%-58s wall %7.2f s   peak RSS %7.1f MiB\n' "$label" "${WALL[$key]}" "$(echo "${RSS[$key]}/1024" | bc -l)"
}

# 4. airgap, empty cache.
measure airgap "airgap build (--jobs $jobs, empty cache, $profile)" \
    "$bin" build "$work/bench.yaml" --out "$work/out" --key "$work/keys/airgap.key" \
    --cache-dir "$work/cache" --insecure-registry "$reg" --jobs "$jobs"
tail -1 "$work/time.out"
airgap_size=$(stat -c %s "$work/out/bench-1.0.0.tar.zst")
rm -rf "$work/cache"

# 5. The peer: skopeo copy --all of each image into one OCI layout, then tar | zstd -T0 -3.
cat > "$work/peer.sh" <<PEER
set -euo pipefail
mkdir -p "$work/peer"
for n in ${names[*]}; do
    skopeo copy -q --all --src-tls-verify=false "docker://$reg/bench/\$n:v1" "oci:$work/peer/images:$reg/bench/\$n:v1"
done
tar -C "$work/peer" -c . | zstd -q -T0 -3 -o "$work/peer.tar.zst"
PEER
measure peer "peer: skopeo copy --all x${#names[@]} + tar | zstd -T0 -3" bash "$work/peer.sh"
peer_size=$(stat -c %s "$work/peer.tar.zst")

echo
printf 'bundle size: airgap %d bytes, peer %d bytes\n' "$airgap_size" "$peer_size"
printf 'ratios (airgap / peer): time %.2f   size %.3f   peak RSS %.2f\n' \
    "$(echo "${WALL[airgap]} / ${WALL[peer]}" | bc -l)" "$(echo "$airgap_size / $peer_size" | bc -l)" \
    "$(echo "${RSS[airgap]} / ${RSS[peer]}" | bc -l)"
