#!/usr/bin/env bash
# List the .deb files (URL + sha256) that a base Debian/Ubuntu system lacks to install PKG..., as a
# `packages:` fragment for an airgap bundle manifest. Uses only Debian's own tools (apt-get, apt-cache) and the
# mirror of THIS machine's apt configuration (whatever /etc/apt/sources.list[.d] says): nothing is hard-coded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/deb-closure.sh [--status FILE | --rootfs DIR] [--os LABEL] [--arch ARCH] [--recommends] PKG...

Prints (stdout) a YAML fragment for the bundle manifest:
  packages:
    - os: debian-12
      name: keepalived_2.2.7-1+b2_amd64.deb
      url: http://<this machine's apt mirror>/debian/pool/main/k/keepalived/keepalived_2.2.7-1+b2_amd64.deb
      sha256: 171b3bcb...

The closure is computed by apt itself (`apt-get --print-uris install`) against a BASE system's dpkg status,
so it holds exactly the packages the target nodes lack:
  --rootfs DIR   the base system is the root file system DIR (uses DIR/var/lib/dpkg/status), e.g. a
                 debootstrapped image of the customer's minimal install
  --status FILE  the base system's dpkg status file (copy /var/lib/dpkg/status from a target node)
  (neither)      an empty base: the full closure down to libc6
  --os LABEL     the bundle's OS label (default: ID-VERSION_ID of this machine's /etc/os-release, e.g.
                 debian-12); the installer picks the files whose label matches a node's OS
  --arch ARCH    target architecture (default: dpkg --print-architecture)
  --recommends   also take Recommends (default: Depends/Pre-Depends only, like --no-install-recommends)
The package lists come from this machine's apt (run `apt-get update` first). For ANOTHER Debian/Ubuntu
release, run the script inside a chroot/container of that release, or pass apt options through APT_OPTS, e.g.
APT_OPTS="-o Dir=/srv/focal-apt" with an apt tree of that release that was `apt-get update`d.

RHEL family (CentOS 7 / Rocky / openEuler / Kylin): scripts/rpm-closure.sh does the same with dnf against the
target release's repositories.
USAGE
}

status=/dev/null
os=""
arch=""
recommends=false
pkgs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --status) status="$2"; shift 2 ;;
    --rootfs) status="$2/var/lib/dpkg/status"; shift 2 ;;
    --os) os="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --recommends) recommends=true; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) pkgs+=("$1"); shift ;;
  esac
done
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "error: no package named" >&2
  usage >&2
  exit 2
fi
if [ "$status" != /dev/null ] && [ ! -f "$status" ]; then
  echo "error: the base system's dpkg status $status does not exist" >&2
  echo "hint: pass --rootfs with a Debian root file system, or --status with a copy of /var/lib/dpkg/status" >&2
  exit 1
fi
if [ -z "$os" ]; then
  # shellcheck disable=SC1091
  os="$(. /etc/os-release && echo "${ID}-${VERSION_ID%%.*}")"
fi
[ -n "$arch" ] || arch="$(dpkg --print-architecture)"

# shellcheck disable=SC2206
apt_opts=(-o Debug::NoLocking=1 -o "Dir::State::status=$status" -o "APT::Architecture=$arch"
          -o "APT::Install-Recommends=$recommends" -o APT::Install-Suggests=false ${APT_OPTS:-})

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. the closure, as apt would download it: 'URL' FILE SIZE HASH
if ! apt-get "${apt_opts[@]}" -qq --print-uris install "${pkgs[@]}" >"$tmp/uris" 2>"$tmp/err"; then
  cat "$tmp/err" >&2
  echo "error: apt could not resolve ${pkgs[*]} against the base system" >&2
  echo "hint: run apt-get update; check the package names with apt-cache policy PKG" >&2
  exit 1
fi
grep "^'" "$tmp/uris" >"$tmp/list" || true
if [ ! -s "$tmp/list" ]; then
  echo "note: the base system already has ${pkgs[*]} and everything they depend on" >&2
  echo "packages: []"
  exit 0
fi

# 2. the SHA256 of each file from apt's own package index (Filename -> SHA256), matched on the pool path
names="$(awk '{ n = $2; sub(/_.*/, "", n); print n }' "$tmp/list" | sort -u)"
# shellcheck disable=SC2086
apt-cache "${apt_opts[@]}" show $names 2>/dev/null \
  | awk '/^Filename: /{f=$2} /^SHA256: /{h=$2} /^$/{if(f!=""&&h!="")print f, h; f=""; h=""} END{if(f!=""&&h!="")print f, h}' \
  >"$tmp/index"

awk -v os="$os" '
  function urldecode(s,   out, i, c) {
    out = ""
    for (i = 1; i <= length(s); i++) {
      c = substr(s, i, 1)
      if (c == "%" && i + 2 <= length(s)) { out = out sprintf("%c", hex(substr(s, i + 1, 2))); i += 2 }
      else out = out c
    }
    return out
  }
  function hex(h,   v, i, d) {
    v = 0; h = tolower(h)
    for (i = 1; i <= 2; i++) { d = index("0123456789abcdef", substr(h, i, 1)) - 1; v = v * 16 + d }
    return v
  }
  NR == FNR { sha[$1] = $2; next }
  {
    url = $1; gsub(/\x27/, "", url)
    path = urldecode(url); sub(/^.*\/pool\//, "pool/", path)
    if (!(path in sha)) { print "error: no SHA256 in apt'"'"'s index for " path > "/dev/stderr"; bad = 1; next }
    name = path; sub(/^.*\//, "", name); sub(/_.*/, "", name)
    if (!printed) { print "packages:"; printed = 1 }
    printf "  - os: %s\n    name: %s\n    url: %s\n    sha256: %s\n", os, name, url, sha[path]
  }
  END { exit bad }
' "$tmp/index" "$tmp/list"
