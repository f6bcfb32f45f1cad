#!/usr/bin/env bash
# The size of a delta bundle against the full bundle of the same release, on the 12-image set of
# scripts/bench-build.sh: release 1.0.0, then a patch release 1.0.1 in which CHANGED of the images (default 3:
# kube-apiserver, kube-controller-manager, kube-scheduler) are replaced by new images (every layer new: the
# worst case for a delta). Builds 1.0.1 in full and as a delta against 1.0.0's lock file, and prints both sizes.
#
# Usage: scripts/bench-delta.sh [TOTAL_MIB=200]
#   PROFILE=release to measure the release build (default: debug; sizes do not depend on it).
#   CHANGED=N     how many images the patch release replaces (1..12, default 3).
# Needs: docker-registry, skopeo, openssl, python3. Traffic stays on 127.0.0.1.
set -euo pipefail
total_mib=${1:-200}
profile=${PROFILE:-debug}
changed=${CHANGED:-3}
cd "$(dirname "$0")/.."
flags=()
[ "$profile" = release ] && flags=(--release)
cargo build -q "${flags[@]}" --bin airgap
bin=$PWD/target/$profile/airgap
work=$(mktemp -d "${TMPDIR:-/tmp}/airgap-bench-delta.XXXXXX")
reg_pid=""
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $reg}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done   # poll until it listens

names=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy coredns pause etcd flannel flannel-cni-plugin ingress-controller webhook-certgen registry)
weights=(14 13 9 12 6 1 8 8 2 16 3 8)   # relative sizes, sum 100 (as bench-build.sh)
mib=$((1024 * 1024))
push() { # push INDEX SEED
    local i=$1 seed=$2 per_platform sizes
    per_platform=$((total_mib * mib * ${weights[$i]} / 100 / 2))
    sizes="$((per_platform / 20)),$((per_platform / 5)),$((per_platform / 4)),$((per_platform - per_platform / 20 - per_platform / 5 - per_platform / 4))"
    rm -rf "$work/src"
    bash scripts/lib/make-image.sh "$work/src" "${names[$i]}" linux/amd64,linux/arm64 "$sizes" "$seed" >/dev/null
    skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/src:${names[$i]}" "docker://$reg/bench/${names[$i]}:v1"
}
manifest() { # manifest VERSION
    echo "name: bench"; echo "version: $1"; echo "platforms: [linux/amd64, linux/arm64]"; echo "images:"
    for n in "${names[@]}"; do echo "  - $reg/bench/$n:v1"; done
}
"$bin" --quiet keygen --out-dir "$work/keys" >/dev/null
build() { # build MANIFEST OUT [ARGS...]
    local m=$1 out=$2; shift 2
    "$bin" --quiet build "$m" --out "$out" --key "$work/keys/airgap.key" --cache-dir "$work/cache" --insecure-registry "$reg" "$@" >/dev/null
}

echo "seeding $reg with ${#names[@]} images (~$total_mib MiB over 2 platforms)..."
for i in "${!names[@]}"; do push "$i" "bench$i"; done
manifest 1.0.0 > "$work/v1.yaml"
build "$work/v1.yaml" "$work/v1"

echo "patch release: $changed image(s) replaced"
for i in $(seq 0 $((changed - 1))); do push "$i" "patch$i"; done
manifest 1.0.1 > "$work/v2.yaml"
build "$work/v2.yaml" "$work/full"
build "$work/v2.yaml" "$work/delta" --base "$work/v1/bench-1.0.0.lock.json"

full=$(stat -c %s "$work/full/bench-1.0.1.tar.zst")
delta=$(stat -c %s "$work/delta/bench-1.0.1.tar.zst")
"$bin" verify "$work/delta/bench-1.0.1.tar.zst" --pubkey "$work/keys/airgap.pub" | sed -n '1,3p'
printf 'full bundle 1.0.1: %d bytes; delta against 1.0.0: %d bytes (%.1f%% of the full bundle)\n' \
    "$full" "$delta" "$(echo "$delta * 100 / $full" | bc -l)"
