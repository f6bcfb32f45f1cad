#!/usr/bin/env bash
# The demo, end to end on this machine, as root, in a few minutes (no internet: only this machine's Debian
# mirror, for the OS packages):
#  1. "upstream": a local docker-registry with two images made from scratch (one multi-arch) and a local file
#     server with the container runtime in its upstream release layouts (containerd, runc, CNI plugins, made
#     from this machine's binaries: their release pages are not reachable here);
#  2. the OS packages the lab's nodes lack (keepalived, haproxy, nginx + its stream module): their dependency
#     closure against the lab's minimal Debian rootfs, from this machine's apt mirror (scripts/deb-closure.sh);
#  3. airgap keygen + airgap build -> bundles/demo-0.1.0-1.tar.zst (+ .minisig, + .lock.json);
#  4. the bundle checked with stock tools only (minisign, zstd, tar, sha256sum), then `airgap verify`;
#  5. the upstream registry and file server STOPPED; a 5-node lab (scripts/lab.sh: systemd-nspawn machines with
#     their own systemd and sshd; LAB_ID demo, LAB_NET 10.83.0);
#  6. `airgap install` of every step that can run here (preflight .. nginx) over SSH, then `airgap status`;
#  7. pulls through the workers' VIP (skopeo from this machine; containerd on a master through its hosts.toml
#     mirror, by the image's upstream name), digests compared with upstream's; the registry stopped on the
#     VIP's holder, the VIP moves, the pull still works;
#  8. the lab down (on failure too), and a summary of what was proven, with the figures.
# Not run here: kubelet .. housekeeping need the Kubernetes server binaries (kubeadm, kubelet), which no
# registry reachable from this machine ships (tests/standins stand in for them in the tests only).
# Usage: bash scripts/demo.sh   (PROFILE=release for an optimized build; DEMO_DIR=DIR keeps the work files)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "error: the demo boots a lab of systemd-nspawn machines: run it as root" >&2; exit 1; }
export LAB_ID=${LAB_ID:-demo} LAB_NET=${LAB_NET:-10.83.0}
export LAB_DIR=${LAB_DIR:-/var/tmp/airgap-lab-$LAB_ID}
lab=scripts/lab.sh
steps=preflight,os-prepare,distribute,runtime,registry,apiserver-lb,nginx

now() { date +%s.%N; }
since() { printf '%.1f' "$(echo "$(now) - $1" | bc)"; }
T0=$(now)
declare -A fig
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; current="$*"; }
current=setup
pids=()
lab_up=false
finish() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if $lab_up; then
    local t; t=$(now)
    "$lab" down && fig[down]=$(since "$t") || echo "demo: lab.sh down failed: see above" >&2
  fi
  [ "$rc" = 0 ] || echo "demo FAILED in step: $current (exit $rc); the lab is down; work files in $work" >&2
  exit "$rc"
}
trap finish EXIT
# wait_for TENTHS CMD...: poll CMD every 0.1 s until it succeeds (the demo's one way to wait)
wait_for() { local n=$1 i; shift; for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done; "$@"; }
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mib() { printf '%.1f MiB' "$(echo "$(stat -c %s "$1") / 1048576" | bc -l)"; }

profile=${PROFILE:-debug}
step "0. setup: the Debian packages the demo uses, airgap ($profile build)"
bash scripts/setup-debian.sh
flags=(); [ "$profile" = release ] && flags=(--release)
t=$(now)
cargo build --locked "${flags[@]}" --bin airgap
fig[cargo]=$(since "$t")
airgap=$PWD/target/$profile/airgap
work=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/airgap-demo.XXXXXX")}
mkdir -p "$work" bundles
"$lab" status | grep -q "is down" || { echo "error: lab $LAB_ID is up: scripts/lab.sh down (LAB_ID=$LAB_ID) first" >&2; exit 1; }

step "1. upstream: a registry with two images, a file server with the container runtime (loopback)"
reg_port=$(free_port)
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry-data}}
http: {addr: 127.0.0.1:$reg_port}
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!; pids+=("$reg_pid")
wait_for 100 listening 127.0.0.1 "$reg_port"
upstream=127.0.0.1:$reg_port
rm -rf "$work/layout"
app=$(scripts/lib/make-image.sh "$work/layout" app:1 linux/amd64,linux/arm64 4096,3000000 1)
tools=$(scripts/lib/make-image.sh "$work/layout" tools:1 linux/amd64 2048,800000 2)
for img in app tools; do
  skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/layout:$img:1" "docker://$upstream/demo/$img:1"
done
echo "upstream $upstream: demo/app:1 $app (amd64 + arm64), demo/tools:1 $tools"
rel=$work/releases
rm -rf "$rel"; mkdir -p "$rel/containerd/bin"
cp /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/bin/ctr "$rel/containerd/bin/"
tar -czf "$rel/containerd-static-linux-amd64.tar.gz" -C "$rel/containerd" bin
cp /usr/sbin/runc "$rel/runc.amd64"
tar -C /usr/lib/cni -czf "$rel/cni-plugins-linux-amd64.tgz" .
for f in containerd-static-linux-amd64.tar.gz runc.amd64 cni-plugins-linux-amd64.tgz; do
  (cd "$rel" && sha256sum "$f" > "$f.sha256")   # published next to each release file, as upstream does
done
files_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$files_port" --directory "$rel" > /dev/null 2>&1 &
files_pid=$!; pids+=("$files_pid")
wait_for 100 listening 127.0.0.1 "$files_port"

step "2. the OS packages the nodes lack: closure against the lab's rootfs, from this machine's apt mirror"
t=$(now)
"$lab" rootfs
rootfs=/var/cache/airgap-lab/rootfs-bookworm
bash scripts/deb-closure.sh --rootfs "$rootfs" keepalived haproxy nginx libnginx-mod-stream > "$work/packages.yaml"
npkg=$(grep -c '^    - os:\|^  - os:' "$work/packages.yaml" || true)
echo "$npkg .deb files (keepalived, haproxy, nginx, libnginx-mod-stream and what they need beyond the rootfs)"
fig[closure]=$(since "$t")

step "3. airgap keygen + airgap build"
{
  sed -e "s|@REGISTRY@|$upstream|g" -e "s|@FILES@|http://127.0.0.1:$files_port|g" scripts/demo-manifest.yaml
  cat "$work/packages.yaml"
} > "$work/demo.yaml"
[ -f "$work/keys/airgap.key" ] || "$airgap" keygen --out-dir "$work/keys"
rm -f bundles/demo-0.1.0-1.*
t=$(now)
"$airgap" build "$work/demo.yaml" --out bundles --key "$work/keys/airgap.key" --insecure-registry "$upstream" \
  --cache-dir "$work/cache"
fig[build]=$(since "$t")
bundle=bundles/demo-0.1.0-1.tar.zst
pub=$work/keys/airgap.pub

step "4. checked with stock tools: minisign, zstd + tar, sha256sum; then airgap verify"
t=$(now)
minisign -Vm "$bundle" -p "$pub"
rm -rf "$work/unpacked"; mkdir "$work/unpacked"
zstd -dc "$bundle" | tar -x -C "$work/unpacked"
(cd "$work/unpacked" && minisign -Vm airgap.json -p "$pub" && sha256sum --quiet -c SHA256SUMS)
entries=$(wc -l < "$work/unpacked/SHA256SUMS")
echo "stock tools: the archive's signature, the root document's signature, $entries checksums: all good"
fig[stock]=$(since "$t")
rm -rf "$work/unpacked"
"$airgap" verify "$bundle" --pubkey "$pub"

step "5. upstream stopped; a 5-node lab ($LAB_ID, $LAB_NET.0/24)"
kill "$reg_pid" "$files_pid"; wait "$reg_pid" "$files_pid" 2>/dev/null || true
listening 127.0.0.1 "$reg_port" && { echo "the upstream registry still answers" >&2; exit 1; }
t=$(now)
lab_up=true
"$lab" up 5
fig[up]=$(since "$t")
"$lab" inventory > "$work/site.yaml"

step "6. airgap install --only $steps, over SSH; airgap status"
t=$(now)
"$airgap" install --inventory "$work/site.yaml" --bundle "$bundle" --pubkey "$pub" --only "$steps" \
  --state-dir "$work/state" --log-dir "$work/log" 2>&1 | tee "$work/install.err"
fig[install]=$(since "$t")
"$airgap" status --inventory "$work/site.yaml" --state-dir "$work/state" | tee "$work/status.txt"
applied=$(grep -o '[0-9]* node-steps\? applied' "$work/install.err" | tail -1 | cut -d' ' -f1)
done_rows=$(awk '$3 == "done"' "$work/status.txt" | wc -l)
other_rows=$(awk 'NR > 1 && $3 != "done" && $3 != "pending"' "$work/status.txt" | wc -l)
[ "$other_rows" = 0 ] || { echo "status shows failed steps" >&2; exit 1; }

step "7. pulls through the workers' VIP $LAB_NET.200:5000"
vip=$LAB_NET.200
digest_via() { echo "sha256:$(skopeo inspect --raw --tls-verify=false "docker://$1" | sha256sum | cut -d' ' -f1)"; }
for pair in "app:$app" "tools:$tools"; do
  name=${pair%%:*}; want=${pair#*:}
  got=$(digest_via "$vip:5000/demo/$name:1")
  [ "$got" = "$want" ] || { echo "digest mismatch for demo/$name:1 through the VIP: $got != $want" >&2; exit 1; }
  echo "skopeo, $vip:5000/demo/$name:1: $got (= upstream)"
done
rm -rf "$work/pulled"
skopeo copy -q --src-tls-verify=false "docker://$vip:5000/demo/app:1" "oci:$work/pulled:app"
echo "skopeo copy (linux/amd64) through the VIP: $(find "$work/pulled/blobs/sha256" -type f | wc -l) blobs, each checked against its digest"
ctr_pull() {  # ctr_pull NODE NAMESPACE: pull demo/app:1 by its UPSTREAM name; hosts.toml sends it to the VIP
  "$lab" exec "$1" ctr -n "$2" images pull --hosts-dir /etc/containerd/certs.d --snapshotter native \
    "$upstream/demo/app:1" >/dev/null
  "$lab" exec "$1" ctr -n "$2" images ls | awk 'NR > 1 {print $3}'
}
got=$(ctr_pull master1 demo1)
[ "$got" = "$app" ] || { echo "containerd on master1 pulled $got, not $app" >&2; exit 1; }
echo "containerd on master1, $upstream/demo/app:1 (upstream stopped) through hosts.toml -> $vip: $got (= upstream)"
holder() { local n; for n in worker1 worker2; do if ip -n "$LAB_ID-$n" -br addr show | grep -q " $vip/"; then echo "$n"; fi; done; }
was=$(holder)
[ "$was" = worker1 ] || [ "$was" = worker2 ] || { echo "the workers' VIP is on '$was', not on one worker" >&2; exit 1; }
other=worker2; [ "$was" = worker2 ] && other=worker1
t=$(now)
"$lab" exec "$was" systemctl stop airgap-registry
moved() { [ "$(holder)" = "$other" ] && skopeo inspect --raw --tls-verify=false "docker://$vip:5000/demo/app:1" >/dev/null 2>&1; }
wait_for 300 moved || { echo "the workers' VIP did not move off $was within 30 s" >&2; exit 1; }
fig[failover]=$(since "$t")
now_on=$other
got=$(ctr_pull master2 demo2)
[ "$got" = "$app" ] || { echo "containerd on master2 pulled $got after the failover, not $app" >&2; exit 1; }
echo "registry stopped on $was: the VIP on $now_on, serving again after ${fig[failover]} s; master2 pulled $got"

step "8. the lab down"
t=$(now)
"$lab" down
fig[down]=$(since "$t")
lab_up=false

cat <<SUMMARY

==================== demo: what it proved ====================
bundle      $bundle: $(mib "$bundle"), built in ${fig[build]} s from 2 images, 3 runtime
            components and $npkg Debian packages (their closure against the lab's rootfs: ${fig[closure]} s)
stock tools minisign -Vm (archive, root document) + sha256sum -c of $entries entries: ${fig[stock]} s
lab         5 systemd-nspawn nodes (own systemd, sshd, netns) up in ${fig[up]} s
install     $steps on 5 nodes over SSH, with upstream stopped:
            $applied node-steps applied in ${fig[install]} s; status: $done_rows done, none failed
pulls       through the workers' VIP $vip:5000: skopeo (2 images) and containerd on master1 by the upstream
            name via hosts.toml, digests equal to upstream's
failover    registry stopped on $was: VIP on $now_on and serving again in ${fig[failover]} s; master2 pulled
lab down    ${fig[down]} s; whole demo $(since "$T0") s (cargo build ${fig[cargo]} s)
not run     kubelet, kubeadm-init, kubeadm-join, flannel, ingress-nginx: they need the Kubernetes server
            binaries (kubeadm, kubelet), which no registry reachable here ships (the tests run them against
            stand-ins); nfs needs a kernel NFS server; redis and housekeeping run in the test suite
work files  $work
SUMMARY
