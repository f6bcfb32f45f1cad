#!/usr/bin/env bash
# bench-registry.sh — airgap serve vs the reference registry (docker-registry, CNCF distribution), same content,
# same machine, same run, loopback only.
#
#   scripts/bench-registry.sh            # ~400 MB over 12 images, 16 clients x 3 rounds
#   BIG=1 scripts/bench-registry.sh      # also: RSS of both servers while 16 clients fetch one 1 GiB blob
#   OLD_AIRGAP=/tmp/airgap-old scripts/bench-registry.sh   # also storm another airgap binary (new/old ratio)
#
# Steps: make a Kubernetes-sized image set from scratch (scripts/lib/make-image.sh), push it to docker-registry
# (skopeo), write a signed bundle of the same layout and `airgap load` it, start both servers and measure
# time-to-ready (first 200 on /v2/), then a pull storm: CLIENTS concurrent curl clients, each fetching every
# manifest (with the usual Accept headers) and every blob over one keep-alive connection, ROUNDS times.
# Prints wall times, the airgap/distribution ratio (< 1: airgap faster), the CPU time each server and the
# clients used during each storm (where the time goes), and each server's peak RSS (VmHWM) and anonymous RSS
# (RssAnon) from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-16}
ROUNDS=${ROUNDS:-3}
BIG=${BIG:-0}
OLD_AIRGAP=${OLD_AIRGAP:-}     # another airgap binary (e.g. the previous release) to storm in the same run
PROFILE=${PROFILE:-release}   # PROFILE=debug SCALE=100: a quick dry run of the script itself
SCALE=${SCALE:-1}             # divide every layer size by this
for t in docker-registry skopeo curl python3 openssl gzip; do
  command -v "$t" >/dev/null || { echo "error: $t is not installed (run scripts/setup-debian.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/airgap-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "== building airgap ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
AIRGAP=$PWD/target/$PROFILE/airgap

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
start_timed() {  # start_timed LOG URL CMD... -> prints "PID MS": exec to the first 200 on URL, polled in-process
  python3 - "$@" <<'PY'
import subprocess, sys, time, http.client, urllib.parse
log, url, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
u = urllib.parse.urlparse(url)
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
while True:
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=1); c.request("GET", u.path)
        if c.getresponse().status == 200: break
    except OSError: time.sleep(0.001)  # poll until ready
print(p.pid, round((time.monotonic() - t0) * 1000, 1))
PY
}
cpu_ms() {  # cpu_ms PID: user + system CPU time of PID so far, in ms
  awk -v t="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print int(($12 + $13) * 1000 / t)}' "/proc/$1/stat"
}
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sampler() {  # sampler PID FILE: the peak RssAnon (kB) of PID, sampled every 50 ms, kept in FILE
  local max=0 v
  while kill -0 "$1" 2>/dev/null; do
    v=$(status_kb "$1" RssAnon); v=${v:-0}
    if [ "$v" -gt "$max" ]; then max=$v; echo "$max" > "$2"; fi
    sleep 0.05   # the sampling period
  done
}
sample_once() {  # sample_once PID FILE: one more sample now (the sampler may be between two)
  local v; v=$(status_kb "$1" RssAnon); v=${v:-0}
  if [ "$v" -gt "$(cat "$2" 2>/dev/null || echo 0)" ]; then echo "$v" > "$2"; fi
}

# --- the image set: names and sizes shaped like a Kubernetes 1.30 install (single platform) ---
layout=$work/layout
declare -a IMAGES=(
  "registry.k8s.io/kube-apiserver:v1.30.0 31000000,1200000"
  "registry.k8s.io/kube-controller-manager:v1.30.0 30000000,1200000"
  "registry.k8s.io/kube-scheduler:v1.30.0 19000000,1200000"
  "registry.k8s.io/kube-proxy:v1.30.0 27000000,1500000"
  "registry.k8s.io/etcd:3.5.12-0 57000000,2000000"
  "registry.k8s.io/coredns/coredns:v1.11.1 18000000"
  "registry.k8s.io/pause:3.9 300000"
  "ghcr.io/flannel-io/flannel:v0.26.4 32000000,1000000"
  "ghcr.io/flannel-io/flannel-cni-plugin:v1.6.2-flannel1 4500000"
  "registry.k8s.io/ingress-nginx/controller:v1.14.0 95000000,4000000,800000"
  "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.5.0 25000000"
  "docker.io/library/redis:7.2 43000000,2000000"
)
echo "== making ${#IMAGES[@]} images" >&2
seed=1
for spec in "${IMAGES[@]}"; do
  # shellcheck disable=SC2086 # the spec is a list of words
  set -- $spec
  sizes=$(echo "$2" | tr , '\n' | awk -v s="$SCALE" '{printf "%s%d", (NR>1?",":""), $1/s}')
  bash scripts/lib/make-image.sh "$layout" "$1" linux/amd64 "$sizes" "$seed" >/dev/null
  seed=$((seed + 1))
done
if [ "$BIG" = 1 ]; then
  echo "== making a 1 GiB layer" >&2
  bash scripts/lib/make-image.sh "$layout" "example.test/big/blob:1" linux/amd64 $((1073741824 / SCALE)) 99 >/dev/null
fi
total=$(du -sb "$layout/blobs" | cut -f1)
if [ "$BIG" = 1 ]; then total=$((total - $(find "$layout/blobs" -size +1000M -printf '%s\n' | head -1))); fi
echo "image set: ${#IMAGES[@]} images, $((total / 1000000)) MB of blobs" >&2

# --- the reference registry, filled with skopeo ---
dport=$(free_port)
mkdir -p "$work/dist"
cat > "$work/dist/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/dist/data
http:
  addr: 127.0.0.1:$dport
YML
docker-registry serve "$work/dist/config.yml" > "$work/dist/log" 2>&1 & pids+=($!)
until curl -sf -o /dev/null "http://127.0.0.1:$dport/v2/"; do sleep 0.05; done   # poll until ready
echo "== pushing to docker-registry" >&2
refs=$(python3 -c 'import json,sys; [print(m["annotations"]["org.opencontainers.image.ref.name"]) for m in json.load(open(sys.argv[1]))["manifests"]]' "$layout/index.json")
path_of() { local r=$1 first=${1%%/*}; if [[ "$r" == */* && ( "$first" == *.* || "$first" == *:* ) ]]; then r=${r#*/}; fi; echo "$r"; }
for r in $refs; do
  skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$layout:$r" "docker://127.0.0.1:$dport/$(path_of "$r")"
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'

# --- the same layout as a signed bundle, loaded into an airgap store ---
echo "== writing the bundle and loading it" >&2
AIRGAP_BENCH_LAYOUT=$layout AIRGAP_BENCH_OUT=$work/bundle cargo test --quiet --test it -- --ignored --exact registry::load::bench_write_bundle_from_layout >/dev/null
bundle=$(ls "$work"/bundle/*.tar.zst)
t0=$(now_ms)
"$AIRGAP" load "$bundle" --store "$work/store" --pubkey "$work/bundle/keys/airgap.pub" >&2
load_ms=$(( $(now_ms) - t0 ))

# --- start both, time-to-ready ---
aport=$(free_port)
read -r apid a_ready < <(start_timed "$work/airgap.log" "http://127.0.0.1:$aport/v2/" "$AIRGAP" -q serve --store "$work/store" --listen "127.0.0.1:$aport")
pids+=("$apid")
read -r dpid d_ready < <(start_timed "$work/dist/log" "http://127.0.0.1:$dport/v2/" docker-registry serve "$work/dist/config.yml")
pids+=("$dpid")
if [ -n "$OLD_AIRGAP" ]; then
  oport=$(free_port)
  read -r opid o_ready < <(start_timed "$work/old.log" "http://127.0.0.1:$oport/v2/" "$OLD_AIRGAP" -q serve --store "$work/store" --listen "127.0.0.1:$oport")
  pids+=("$opid")
fi
sampler "$apid" "$work/airgap.anon" & pids+=($!)
sampler "$dpid" "$work/dist.anon" & pids+=($!)

# --- the URL list: every manifest (top-level; child manifests of indexes too) and every blob ---
python3 - "$layout" > "$work/paths" <<'PY'
import json, sys, os
layout = sys.argv[1]
def blob(d): return json.load(open(os.path.join(layout, "blobs/sha256", d.split(":")[1])))
def path_of(r):
    name = r.rsplit(":", 1)[0] if ":" in r.split("/")[-1] else r
    first = name.split("/")[0]
    if "/" in name and ("." in first or ":" in first): name = name.split("/", 1)[1]
    return name, r.split("/")[-1].split(":")[-1]
for m in json.load(open(os.path.join(layout, "index.json")))["manifests"]:
    name, tag = path_of(m["annotations"]["org.opencontainers.image.ref.name"])
    if name == "big/blob": continue
    print(f"M /v2/{name}/manifests/{tag}")
    stack = [m["digest"]]
    while stack:
        d = stack.pop(); b = blob(d)
        if "manifests" in b:
            for c in b["manifests"]: print(f"M /v2/{name}/manifests/{c['digest']}"); stack.append(c["digest"])
        else:
            for x in [b["config"]] + b["layers"]: print(f"B /v2/{name}/blobs/{x['digest']}")
PY
accept='Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
curl_config() {  # curl_config PORT -> a curl config fetching every path once
  while read -r kind p; do
    echo "url = \"http://127.0.0.1:$1$p\""
    echo "output = \"/dev/null\""
    if [ "$kind" = M ]; then echo "header = \"$accept\""; fi
  done < "$work/paths"
}
curl_config "$aport" > "$work/airgap.curl"
curl_config "$dport" > "$work/dist.curl"
if [ -n "$OLD_AIRGAP" ]; then curl_config "$oport" > "$work/old.curl"; fi
nreq=$(wc -l < "$work/paths")

storm() {  # storm CONFIG SERVER_PID -> "WALL_MS SERVER_CPU_MS CLIENTS_CPU_MS" for CLIENTS concurrent clients x ROUNDS
  local t0 c0; t0=$(now_ms); c0=$(cpu_ms "$2")
  # shellcheck disable=SC2016 # the inner script gets its arguments as $1..$3
  /usr/bin/time -o "$work/storm.time" -f '%U %S' \
    bash -c 'for _ in $(seq "$1"); do seq "$2" | xargs -P "$2" -I{} curl -sS --fail -K "$3"; done' _ "$ROUNDS" "$CLIENTS" "$1"
  echo "$(( $(now_ms) - t0 )) $(( $(cpu_ms "$2") - c0 )) $(awk '{print int(($1 + $2) * 1000)}' "$work/storm.time")"
}
# One warm-up pass each (page cache; airgap checks each blob's digest on its first download), then the
# measured storms, alternating.
curl -sS --fail -K "$work/airgap.curl"; curl -sS --fail -K "$work/dist.curl"
if [ -n "$OLD_AIRGAP" ]; then curl -sS --fail -K "$work/old.curl"; fi
echo "== pull storm: $CLIENTS clients x $ROUNDS rounds x $nreq requests ($((total / 1000000)) MB per client pass)" >&2
storm "$work/airgap.curl" "$apid" > "$work/airgap.storm"; read -r a_ms a_cpu a_cli < "$work/airgap.storm"
storm "$work/dist.curl" "$dpid" > "$work/dist.storm"; read -r d_ms d_cpu d_cli < "$work/dist.storm"
if [ -n "$OLD_AIRGAP" ]; then storm "$work/old.curl" "$opid" > "$work/old.storm"; read -r o_ms o_cpu o_cli < "$work/old.storm"; fi
sample_once "$apid" "$work/airgap.anon"; sample_once "$dpid" "$work/dist.anon"
a_hwm=$(status_kb "$apid" VmHWM); a_anon=$(cat "$work/airgap.anon")
d_hwm=$(status_kb "$dpid" VmHWM); d_anon=$(cat "$work/dist.anon")
gb=$(python3 -c "print(round($total * $CLIENTS * $ROUNDS / 1e9, 2))")

echo
echo "airgap registry benchmark ($(nproc) cores, $(date -u +%F))"
echo "  image set:          ${#IMAGES[@]} images, $nreq manifests+blobs, $((total / 1000000)) MB"
echo "  airgap load:        ${load_ms} ms (verify + store, one pass)"
echo "  time to ready:      airgap ${a_ready} ms, distribution ${d_ready} ms"
printf '  pull storm:         %s clients x %s rounds (%s GB): airgap %s ms (%s MB/s), distribution %s ms (%s MB/s)\n' \
  "$CLIENTS" "$ROUNDS" "$gb" "$a_ms" "$(python3 -c "print(round($total*$CLIENTS*$ROUNDS/1e6/($a_ms/1000)))")" \
  "$d_ms" "$(python3 -c "print(round($total*$CLIENTS*$ROUNDS/1e6/($d_ms/1000)))")"
echo "  ratio airgap/distribution: $(python3 -c "print(round($a_ms / $d_ms, 3))") (< 1: airgap faster)"
echo "  CPU during the storm: airgap server $a_cpu ms + clients $a_cli ms; distribution server $d_cpu ms + clients $d_cli ms"
if [ -n "$OLD_AIRGAP" ]; then
  echo "  old airgap ($OLD_AIRGAP): ready ${o_ready} ms, storm $o_ms ms (server $o_cpu ms + clients $o_cli ms CPU); new/old $(python3 -c "print(round($a_ms / $o_ms, 3))")"
fi
echo "  peak RSS (VmHWM):   airgap $((a_hwm / 1024)) MB, distribution $((d_hwm / 1024)) MB"
echo "  peak RssAnon:       airgap $((a_anon / 1024)) MB, distribution $((d_anon / 1024)) MB"

if [ "$BIG" = 1 ]; then
  bigd=$(python3 -c '
import json,sys,os
l=sys.argv[1]
for m in json.load(open(l+"/index.json"))["manifests"]:
    if m["annotations"]["org.opencontainers.image.ref.name"].startswith("example.test/big/blob"):
        b=json.load(open(l+"/blobs/sha256/"+m["digest"][7:])); print(b["layers"][0]["digest"])' "$layout")
  for who in airgap dist; do
    port=$aport; pid=$apid; [ $who = dist ] && { port=$dport; pid=$dpid; }
    t0=$(now_ms)
    seq "$CLIENTS" | xargs -P "$CLIENTS" -I{} curl -sS --fail -o /dev/null "http://127.0.0.1:$port/v2/big/blob/blobs/$bigd"
    sample_once "$pid" "$work/$who.anon"
    echo "  1 GiB blob x $CLIENTS clients: $who $(( $(now_ms) - t0 )) ms, VmHWM $(( $(status_kb "$pid" VmHWM) / 1024 )) MB, peak RssAnon $(( $(cat "$work/$who.anon") / 1024 )) MB"
  done
fi
