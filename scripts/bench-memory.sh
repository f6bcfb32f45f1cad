#!/usr/bin/env bash
# Peak memory (RSS) and time of `airgap verify` and `airgap unpack` on a bundle holding one large
# incompressible layer: memory must stay flat whatever the bundle size.
#
# Usage: scripts/bench-memory.sh [SIZE_MIB=1024] [SPLIT_SIZE]
#   PROFILE=release to measure an optimized build (default: the debug build, deps at opt-level 2).
# Needs: /usr/bin/time (Debian package `time`), ~3x SIZE_MIB of free disk in $TMPDIR.
set -euo pipefail
size_mib=${1:-1024}
split=${2:-}
profile=${PROFILE:-debug}
cd "$(dirname "$0")/.."
flags=()
[ "$profile" = release ] && flags=(--release)
cargo build -q "${flags[@]}" --bin airgap --example bench_bundle
bin=target/$profile/airgap
work=$(mktemp -d "${TMPDIR:-/tmp}/airgap-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

declare -A WALL
measure() { # key, label, command...
    local key=$1 label=$2; shift 2
    /usr/bin/time -v "$@" >"$work/time.out" 2>"$work/time.err" || { cat "$work/time.err"; exit 1; }
    local rss secs
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.err")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.err")
    WALL[$key]=$secs
    printf '%-34s peak RSS %7.1f MiB   wall %6.2f s\n' "$label" "$(awk -v k="$rss" 'BEGIN {print k/1024}')" "$secs"
}
ratio() { awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN {printf "%.2f", a / b}'; }

measure build "airgap writer ($size_mib MiB layer)" "target/$profile/examples/bench_bundle" "$work" "$size_mib" ${split:+"$split"}
bundle=$(cat "$work/time.out")
echo "bundle: $bundle ($(cat "$work"/out/bench-1.0.0.tar.zst* | wc -c) bytes with signature files)"
measure verify "airgap verify" "$bin" --quiet verify "$bundle" --pubkey "$work/keys/airgap.pub"
measure unpack "airgap unpack" "$bin" --quiet unpack "$bundle" --to "$work/unpacked" --pubkey "$work/keys/airgap.pub"
rm -rf "$work/unpacked"
if [ -z "$split" ]; then
    archive=$work/out/bench-1.0.0.tar.zst
    measure peer_sig "peer: minisign -Vm" minisign -Vm "$archive" -p "$work/keys/airgap.pub" -q
    mkdir "$work/peer"
    measure peer_x "peer: zstd -dc | tar -x" sh -c "zstd -qdc '$archive' | tar -xf - -C '$work/peer'"
    echo "ratios: verify / minisign -V = $(ratio verify peer_sig) (verify = signature pass + entry pass);" \
        "unpack / (zstd|tar -x) = $(ratio unpack peer_x)"
fi
