#!/usr/bin/env bash
# make-image.sh LAYOUT TAG PLATFORMS LAYER_SIZES [SEED]
# Make a test image from scratch in an OCI image layout (no internet needed): for each platform in the
# comma-separated PLATFORMS (e.g. linux/amd64,linux/arm64), one config and gzip layers of pseudo-random
# content of the comma-separated LAYER_SIZES (bytes, e.g. 4096,1048576); an OCI index when there is more
# than one platform. The image is tagged TAG in LAYOUT/index.json. Push it with
#   skopeo copy --all --preserve-digests oci:LAYOUT:TAG docker://HOST:PORT/REPO:TAG
set -euo pipefail
layout=$1 tag=$2 platforms=$3 sizes=$4 seed=${5:-$RANDOM}
mkdir -p "$layout/blobs/sha256"
[ -f "$layout/oci-layout" ] || printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
[ -f "$layout/index.json" ] || printf '{"schemaVersion":2,"manifests":[]}' > "$layout/index.json"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

put() {  # put FILE -> prints "sha256:<hex> <size>", stores the blob
  local h s; h=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
  cp "$1" "$layout/blobs/sha256/$h"; echo "sha256:$h $s"
}

descs=()
IFS=, read -ra plats <<< "$platforms"
IFS=, read -ra lsizes <<< "$sizes"
for p in "${plats[@]}"; do
  os=${p%%/*}; rest=${p#*/}; arch=${rest%%/*}; variant=""; [ "$rest" != "$arch" ] && variant=${rest#*/}
  layers=(); diffs=()
  i=0
  for n in "${lsizes[@]}"; do
    i=$((i+1)); d="$tmp/l$i"; mkdir -p "$d/data"
    # pseudo-random, seeded content: openssl's AES-CTR keystream
    head -c "$n" /dev/zero | openssl enc -aes-128-ctr -nosalt -pass "pass:$seed-$p-$i" -pbkdf2 2>/dev/null > "$d/data/blob-$i.bin"
    echo "layer $i of $tag for $p (seed $seed)" > "$d/data/README"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d" -cf "$tmp/l$i.tar" data
    diffs+=("\"sha256:$(sha256sum "$tmp/l$i.tar" | cut -d' ' -f1)\"")
    gzip -n -1 -c "$tmp/l$i.tar" > "$tmp/l$i.tar.gz"
    read -r ld ls < <(put "$tmp/l$i.tar.gz")
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$ld\",\"size\":$ls}")
    rm -rf "$d" "$tmp/l$i.tar" "$tmp/l$i.tar.gz"
  done
  vjson=""; [ -n "$variant" ] && vjson=",\"variant\":\"$variant\""
  printf '{"architecture":"%s","os":"%s"%s,"config":{"Cmd":["/bin/true"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$arch" "$os" "$vjson" "$(IFS=,; echo "${diffs[*]}")" > "$tmp/config.json"
  read -r cd cs < <(put "$tmp/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$cd" "$cs" "$(IFS=,; echo "${layers[*]}")" > "$tmp/manifest.json"
  read -r md ms < <(put "$tmp/manifest.json")
  descs+=("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$md\",\"size\":$ms,\"platform\":{\"architecture\":\"$arch\",\"os\":\"$os\"$vjson}}")
done
if [ ${#plats[@]} -gt 1 ]; then
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "$(IFS=,; echo "${descs[*]}")" > "$tmp/index.json"
  read -r td ts < <(put "$tmp/index.json"); tmt=application/vnd.oci.image.index.v1+json
else
  td=$md; ts=$ms; tmt=application/vnd.oci.image.manifest.v1+json
fi
python3 - "$layout/index.json" "$tag" "$tmt" "$td" "$ts" <<'PY'
import json, sys
path, tag, mt, d, s = sys.argv[1:]
idx = json.load(open(path))
idx["manifests"] = [m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
idx["manifests"].append({"mediaType": mt, "digest": d, "size": int(s), "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump(idx, open(path, "w"))
PY
echo "$td"
