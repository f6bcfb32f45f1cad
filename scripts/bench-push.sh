#!/usr/bin/env bash
# `airgap push` against the peer, on the same 12-image set (bench-build.sh's), each into its own empty
# reference registry (docker-registry, plain HTTP on loopback) in the same run:
#   airgap push --from-store STORE        (the images of a loaded store)
#   airgap push BUNDLE --pubkey PUB       (the same, verifying the bundle while staging it first)
#   skopeo copy --all of each image        (from the unpacked bundle's OCI layout, one image after another)
# Prints wall time, peak RSS and the ratios (airgap / peer: below 1 means airgap is faster), then checks
# that the digests airgap pushed are the peer's.
#
# Usage: scripts/bench-push.sh [TOTAL_MIB=400]
#   AIRGAP_BIN=PATH to measure that binary instead of building one.
#   PROFILE=debug to measure the debug build (default: release).   JOBS=N: airgap's --jobs (default 8).
#   SEED_DIR=DIR  keep the seeded source registry storage in DIR and reuse it (seeding takes minutes).
# Needs: docker-registry, skopeo, zstd, tar, python3, /usr/bin/time (Debian package `time`), bc.
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
    bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile/airgap
fi
work=$(mktemp -d "${TMPDIR:-/var/tmp}/airgap-bench-push.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
registry() { # registry NAME STORAGE -> prints HOST:PORT
    local port; port=$(free_port)
    cat > "$work/$1.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $2}}
http: {addr: 127.0.0.1:$port}
YML
    docker-registry serve "$work/$1.yml" >"$work/$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done   # poll until it listens
    echo "127.0.0.1:$port"
}

# 1. The source registry, seeded with the image set of bench-build.sh.
storage=${SEED_DIR:-$work/source}
src=$(registry source "$storage")
names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy coredns pause etcd flannel flannel-cni-plugin ingress-controller webhook-certgen registry)
weights=(14 13 9 12 6 1 8 8 2 16 3 8)
mib=$((1024 * 1024))
if [ -f "$storage/.seeded-$total_mib" ]; then
    echo "reusing the seeded registry storage in $storage"
else
    echo "seeding $src with ${#names[@]} images (~$total_mib MiB over 2 platforms)..."
    for i in "${!names[@]}"; do
        per_platform=$((total_mib * mib * ${weights[$i]} / 100 / 2))
        sizes="$((per_platform / 20)),$((per_platform / 5)),$((per_platform / 4)),$((per_platform - per_platform / 20 - per_platform / 5 - per_platform / 4))"
        bash scripts/lib/make-image.sh "$work/img" "${names[$i]}" linux/amd64,linux/arm64 "$sizes" "bench$i" >/dev/null
        skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/img:${names[$i]}" "docker://$src/bench/${names[$i]}:v1"
    done
    rm -rf "$work/img"
    touch "$storage/.seeded-$total_mib"
fi

# 2. The bundle (built from the source registry), loaded into a store and unpacked for the peer.
{
    echo "name: bench"; echo "version: 1.0.0"; echo "platforms: [linux/amd64, linux/arm64]"; echo "images:"
    for n in "${names[@]}"; do echo "  - $src/bench/$n:v1"; done
} > "$work/bench.yaml"
"$bin" --quiet keygen --out-dir "$work/keys" >/dev/null
"$bin" --quiet build "$work/bench.yaml" --out "$work/out" --key "$work/keys/airgap.key" --cache-dir "$work/cache" --insecure-registry "$src" >/dev/null
rm -rf "$work/cache"
bundle=$work/out/bench-1.0.0.tar.zst
"$bin" --quiet load "$bundle" --pubkey "$work/keys/airgap.pub" --store "$work/store" >/dev/null
mkdir -p "$work/unpacked"
tar -I zstd -xf "$bundle" -C "$work/unpacked"
echo '{}' > "$work/auth.json"

declare -A WALL RSS
measure() { # key label command...
    local key=$1 label=$2; shift 2
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    /usr/bin/time -v "$@" >"$work/time.out" 2>"$work/time.err" || { cat "$work/time.err"; exit 1; }
    RSS[$key]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.err")
    WALL[$key]=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.err")
    printf '%-62s wall %7.2f s   peak RSS %7.1f MiB\n' "$label" "${WALL[$key]}" "$(echo "${RSS[$key]}/1024" | bc -l)"
}

# 3. The three pushes, each into its own empty registry.
t_store=$(registry t-store "$work/t-store")
t_bundle=$(registry t-bundle "$work/t-bundle")
t_peer=$(registry t-peer "$work/t-peer")
measure store "airgap push --from-store (--jobs $jobs, $profile)" \
    "$bin" --quiet push --from-store "$work/store" --to "$t_store" --insecure-registry --authfile "$work/auth.json" --jobs "$jobs"
measure bundle "airgap push BUNDLE (verify + stage + push, --jobs $jobs)" \
    "$bin" --quiet push "$bundle" --pubkey "$work/keys/airgap.pub" --to "$t_bundle" --insecure-registry --authfile "$work/auth.json" --jobs "$jobs" --work-dir "$work"
cat > "$work/peer.sh" <<PEER
set -euo pipefail
for n in ${names[*]}; do
    skopeo copy -q --all --dest-tls-verify=false "oci:$work/unpacked/images:$src/bench/\$n:v1" "docker://$t_peer/bench/\$n:v1"
done
PEER
measure peer "peer: skopeo copy --all x${#names[@]} (OCI layout → registry)" bash "$work/peer.sh"
second=$("$bin" push --from-store "$work/store" --to "$t_store" --insecure-registry --authfile "$work/auth.json" | tail -1)
echo "second push: $second"

# 4. Same digests everywhere.
for n in "${names[@]}"; do
    a=$(skopeo inspect --raw --tls-verify=false "docker://$t_store/bench/$n:v1" | sha256sum)
    b=$(skopeo inspect --raw --tls-verify=false "docker://$t_peer/bench/$n:v1" | sha256sum)
    [ "$a" = "$b" ] || { echo "digest of $n differs: airgap $a, skopeo $b" >&2; exit 1; }
done
echo "digests: airgap's equal skopeo's for all ${#names[@]} images"
echo
printf 'ratios (airgap / peer): --from-store time %.2f  RSS %.2f;  bundle time %.2f  RSS %.2f\n' \
    "$(echo "${WALL[store]} / ${WALL[peer]}" | bc -l)" "$(echo "${RSS[store]} / ${RSS[peer]}" | bc -l)" \
    "$(echo "${WALL[bundle]} / ${WALL[peer]}" | bc -l)" "$(echo "${RSS[bundle]} / ${RSS[peer]}" | bc -l)"
