#!/usr/bin/env bash
# Put a containerd 2.x next to (never over) this Debian 12 machine's containerd 1.6, for the tests that check the
# containerd config the `runtime` step renders under both (tests/it/containerd_config.rs): Debian sid's
# `containerd` package (2.x, needs only libc6 >= 2.34), unpacked into CACHE/bin (containerd, ctr,
# containerd-shim-runc-v2), its package version in CACHE/VERSION. Run by scripts/setup-debian.sh; quick when the
# cache is there (`--refresh` fetches sid's current 2.x again).
#
# Integrity: apt does the download with a private configuration (a sid source on THIS machine's apt mirror, read
# from /etc/apt/sources.list[.d], never hard-coded; its own lists, cache and an empty dpkg status under
# CACHE/apt), so apt checks sid's InRelease signature against debian-archive-keyring, the Packages index against
# InRelease and the .deb against the Packages index. Nothing of the system's apt state or dpkg database changes.
set -euo pipefail

CACHE=${AIRGAP_CONTAINERD2_DIR:-/var/cache/airgap-test/containerd2}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
refresh=0
[ "${1:-}" = "--refresh" ] && refresh=1

die() { echo "error: $*" >&2; exit 1; }
hint() { echo "hint: $*" >&2; }

have() { [ -x "$CACHE/bin/containerd" ] && [ -f "$CACHE/VERSION" ] && "$CACHE/bin/containerd" --version >/dev/null 2>&1; }

# shellcheck disable=SC1091  # scripts/lib/apt-mirror.sh, itself checked with the other scripts
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-mirror.sh"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ "$refresh" = 0 ] && have; then
  exit 0
fi
[ -r "$KEYRING" ] || die "$KEYRING is missing (apt-get install debian-archive-keyring): apt cannot check sid's signature"
command -v apt-get >/dev/null || die "apt-get is missing: this script needs a Debian machine"

arch=$(dpkg --print-architecture)
work="$CACHE/apt"
rm -rf "$work"
mkdir -p "$work/sources" "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
: >"$work/status"
cat >"$work/sources/sid.sources" <<EOF
Types: deb
URIs: $(mirror)
Suites: sid
Components: main
Architectures: $arch
Targets: Packages
Signed-By: $KEYRING
EOF
# apt downloads as its sandbox user when it exists
if id _apt >/dev/null 2>&1; then chown _apt "$work/deb" "$work/lists/partial" "$work/cache/archives/partial"; fi
apt_opts=(
  -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources"
  -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "Dir::State::status=$work/status"
  -o "APT::Architectures=$arch" -o Acquire::Languages=none -q
)
echo "containerd2: reading sid's package index (signed) from this machine's apt mirror" >&2
# apt-get update exits 0 on a fetch or signature failure of a source: -o APT::Update::Error-Mode=any makes it fail
apt-get "${apt_opts[@]}" -o APT::Update::Error-Mode=any update >"$work/update.log" 2>&1 || {
  cat "$work/update.log" >&2
  die "could not read sid's package index (signed InRelease + Packages) from $(mirror)"
}
if grep -q '^[WE]:' "$work/update.log"; then
  cat "$work/update.log" >&2
  die "apt reported problems with sid's package index: not trusted"
fi
# whatever 2.x sid has (the newest if the index lists several)
version=$(apt-cache "${apt_opts[@]}" madison containerd | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -E '^([0-9]+:)?2\.' | head -n 1 || true)
if [ -z "$version" ]; then
  apt-cache "${apt_opts[@]}" madison containerd >&2 || true
  hint "sid's containerd is no longer 2.x: adapt scripts/fetch-containerd2.sh (and the tests that use it) to the version sid has"
  die "Debian sid has no containerd 2.x"
fi
(cd "$work/deb" && apt-get "${apt_opts[@]}" download "containerd=$version" >"$work/download.log" 2>&1) || {
  cat "$work/download.log" >&2
  die "apt could not download containerd $version from sid"
}
deb=$(find "$work/deb" -name 'containerd_*.deb' | head -n 1)
[ -n "$deb" ] || die "apt downloaded no containerd .deb (see $work/download.log)"
rm -rf "$work/x" "$CACHE/bin.new"
dpkg-deb -x "$deb" "$work/x"
mkdir -p "$CACHE/bin.new"
for b in containerd ctr containerd-shim-runc-v2; do
  install -m 0755 "$work/x/usr/bin/$b" "$CACHE/bin.new/$b"
done
"$CACHE/bin.new/containerd" --version | grep -q ' v\?2\.' || die "the unpacked containerd is not 2.x: $("$CACHE/bin.new/containerd" --version)"
rm -rf "${CACHE:?}/bin"
mv "$CACHE/bin.new" "$CACHE/bin"
echo "$version" >"$CACHE/VERSION"
rm -rf "$work"
echo "containerd2: sid's containerd $version in $CACHE/bin ($("$CACHE/bin/containerd" --version))" >&2
