#!/usr/bin/env bash
# The demo, end to end on this machine (no internet needed):
#  1. a local upstream registry (the reference `docker-registry`) with two multi-arch images made from scratch,
#     and a local file server with a binary and its published .sha256;
#  2. `airgap keygen` + `airgap build` -> bundles/demo-0.1.0-1.tar.zst (+ .minisig, + .lock.json);
#  3. checks with stock tools (minisign, zstd, tar) and with `airgap verify` / `airgap inspect`;
#  4. `airgap load` into a registry store, `airgap serve` it, and pull every image back with skopeo,
#     with the upstream registry STOPPED, comparing digests;
#  5. `airgap plan` of the example site with this bundle.
# Usage: scripts/demo.sh            (PROFILE=debug for a faster, unoptimized build; DEMO_DIR=... to keep files)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
profile=${PROFILE:-release}
flags=(); [ "$profile" = release ] && flags=(--release)
cargo build --locked "${flags[@]}" --bin airgap
airgap=$PWD/target/$profile/airgap

work=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/airgap-demo.XXXXXX")}
mkdir -p "$work" bundles
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on :$1" >&2; return 1; }

step "1. upstream registry and file server on loopback"
reg_port=$(free_port)
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry-data}}
http: {addr: 127.0.0.1:$reg_port}
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!; pids+=("$reg_pid")
wait_port "$reg_port"
rm -rf "$work/layout"
app=$(scripts/lib/make-image.sh "$work/layout" app:1 linux/amd64,linux/arm64 4096,3000000 1)
tools=$(scripts/lib/make-image.sh "$work/layout" tools:1 linux/amd64,linux/arm64,linux/arm/v7 2048,800000 2)
for img in app tools; do
  skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/layout:$img:1" "docker://127.0.0.1:$reg_port/demo/$img:1"
done
echo "upstream 127.0.0.1:$reg_port: demo/app:1 $app, demo/tools:1 $tools"
mkdir -p "$work/files"
for arch in amd64 arm64; do
  head -c 2000000 /dev/urandom > "$work/files/kubectl-$arch"
  (cd "$work/files" && sha256sum "kubectl-$arch" > "kubectl-$arch.sha256")
done
files_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$files_port" --directory "$work/files" > /dev/null 2>&1 &
pids+=($!)
wait_port "$files_port"

step "2. airgap keygen + airgap build"
[ -f "$work/keys/airgap.key" ] || "$airgap" keygen --out-dir "$work/keys"
sed -e "s|@REGISTRY@|127.0.0.1:$reg_port|g" -e "s|@FILES@|http://127.0.0.1:$files_port|g" scripts/demo-manifest.yaml > "$work/demo.yaml"
rm -f bundles/demo-0.1.0-1.*
"$airgap" build "$work/demo.yaml" --out bundles --key "$work/keys/airgap.key" \
  --insecure-registry "127.0.0.1:$reg_port" --cache-dir "$work/cache"
bundle=bundles/demo-0.1.0-1.tar.zst

step "3. check it: stock minisign, zstd + tar, then airgap verify and inspect"
minisign -Vm "$bundle" -p "$work/keys/airgap.pub"
zstd -dc "$bundle" | tar -t > "$work/entries.txt"
echo "tar -t: $(wc -l < "$work/entries.txt") entries, first: $(head -3 "$work/entries.txt" | tr '\n' ' ')"
"$airgap" verify "$bundle" --pubkey "$work/keys/airgap.pub"
"$airgap" inspect "$bundle" --pubkey "$work/keys/airgap.pub"

step "4. airgap load + airgap serve, then pull with skopeo (upstream registry stopped)"
kill "$reg_pid"; wait "$reg_pid" 2>/dev/null || true
"$airgap" load "$bundle" --store "$work/store" --pubkey "$work/keys/airgap.pub"
"$airgap" images --store "$work/store"
serve_port=$(free_port)
"$airgap" serve --store "$work/store" --listen "127.0.0.1:$serve_port" 2> "$work/serve.log" &
pids+=($!)
wait_port "$serve_port"
for pair in "app:$app" "tools:$tools"; do
  name=${pair%%:*}; want=${pair#*:}
  got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$serve_port/demo/$name:1" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$want" ] || { echo "demo: digest mismatch for demo/$name:1: $got != $want" >&2; exit 1; }
  echo "pulled demo/$name:1 from airgap serve: $got (equal to upstream)"
done
skopeo copy -q --all --src-tls-verify=false "docker://127.0.0.1:$serve_port/demo/app:1" "oci:$work/pulled:app"
echo "skopeo copy --all from airgap serve: $(ls "$work/pulled/blobs/sha256" | wc -l) blobs"

step "5. airgap plan for the example site, with this bundle"
"$airgap" plan --inventory manifests/site.example.yaml --bundle "$bundle" > "$work/plan.txt"
head -40 "$work/plan.txt"
echo "... ($(wc -l < "$work/plan.txt") lines in all: $work/plan.txt)"
step "demo done: bundle in $bundle, work files in $work"
