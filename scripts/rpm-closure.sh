#!/usr/bin/env bash
# List the .rpm files (URL + sha256) that a base RHEL-family system (CentOS/Rocky/Alma/openEuler/Kylin) lacks to
# install PKG..., as a `packages:` fragment for an airgap bundle manifest. Uses the family's own resolver (dnf)
# against the target release's repositories, given on the command line: nothing is hard-coded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/rpm-closure.sh --os TAG --repo URL [--repo URL...] [--installroot DIR] [--releasever N]
                              [--arch ARCH] [--absolute] PKG...

Prints (stdout) a YAML fragment for the bundle manifest:
  packages:
    - os: el9
      name: keepalived
      url: pub/rocky/9/AppStream/x86_64/os/Packages/k/keepalived-2.2.8-3.el9.x86_64.rpm
      sha256: 5d0c...

The closure is dnf's own transaction (`dnf install --downloadonly`) against a BASE system's rpm database, so it
holds exactly the packages the target nodes lack:
  --installroot DIR  the base system is the root file system DIR (its /var/lib/rpm), e.g. an image of the
                     customer's minimal install; without it: an empty base, the full closure
  --repo URL         a repository of the TARGET release (baseos, appstream, updates...; http(s):// or
                     file://), repeatable; this machine's own repositories are never used
  --os TAG           the bundle's OS tag the installer matches against the nodes (el7, el9, rocky-9...)
  --releasever N     $releasever for the repositories (default: the major version in --os, e.g. 9)
  --arch ARCH        target architecture (default: x86_64)
  --absolute         print the repositories' full URLs (default: relative to the mirror's root, so the manifest
                     names no mirror host: `airgap build --mirror OS=URL` picks the mirror, e.g. a customer's
                     internal mirror with the upstream layout)
The sha256 of each file is computed from the downloaded file; `airgap build` downloads it again and checks it.
Repository GPG signatures are not checked here (gpgcheck=0): pin the result in the manifest after review.
Needs dnf (>= 4) and rpm: on Debian, `apt-get install dnf rpm`.
USAGE
}

os=""
releasever=""
arch="x86_64"
absolute=false
installroot=""
repos=()
pkgs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --os) os="$2"; shift 2 ;;
    --repo) repos+=("$2"); shift 2 ;;
    --installroot) installroot="$2"; shift 2 ;;
    --releasever) releasever="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --absolute) absolute=true; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) pkgs+=("$1"); shift ;;
  esac
done
if [ ${#pkgs[@]} -eq 0 ] || [ -z "$os" ] || [ ${#repos[@]} -eq 0 ]; then
  echo "error: give --os TAG, at least one --repo URL and a package" >&2
  usage >&2
  exit 2
fi
for tool in dnf rpm sha256sum; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; echo "hint: apt-get install dnf rpm (Debian) or dnf install dnf (RHEL)" >&2; exit 1; }
done
[ -n "$releasever" ] || releasever="$(echo "$os" | grep -o '[0-9]\+' | head -1)"
[ -n "$releasever" ] || { echo "error: no --releasever and no version in --os $os" >&2; exit 2; }
if [ -n "$installroot" ] && [ ! -d "$installroot/var/lib/rpm" ] && [ ! -d "$installroot/usr/lib/sysimage/rpm" ]; then
  echo "error: $installroot has no rpm database (var/lib/rpm or usr/lib/sysimage/rpm)" >&2
  echo "hint: pass the root file system of a base install of the target release, or leave --installroot out" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
root="${installroot:-$tmp/root}"
mkdir -p "$root" "$tmp/home"
# the base's rpm database where the TARGET release keeps it (el9+: /usr/lib/sysimage/rpm, older: /var/lib/rpm),
# whatever this machine's rpm defaults to (Debian's rpm uses ~/.rpmdb): dnf reads it through librpm's macros
dbpath=/var/lib/rpm
[ -d "$root/usr/lib/sysimage/rpm" ] && [ ! -d "$root/var/lib/rpm" ] && dbpath=/usr/lib/sysimage/rpm
printf '%%_dbpath %s\n' "$dbpath" >"$tmp/home/.rpmmacros"
export HOME="$tmp/home"

dnf_opts=(-q -y --installroot="$root" --releasever="$releasever" --forcearch="$arch" --disablerepo='*'
          --setopt=cachedir="$tmp/cache" --setopt=persistdir="$tmp/persist" --setopt=reposdir=/dev/null
          --setopt=install_weak_deps=False --setopt=logdir="$tmp")
i=0
for r in "${repos[@]}"; do
  i=$((i + 1))
  dnf_opts+=(--repofrompath="airgap$i,$r" --setopt="airgap$i.gpgcheck=0")
done

# 1. the transaction dnf would run on the base, downloaded (nothing is installed)
if ! dnf "${dnf_opts[@]}" install --downloadonly --downloaddir="$tmp/dl" "${pkgs[@]}" >"$tmp/out" 2>&1; then
  cat "$tmp/out" >&2
  echo "error: dnf could not resolve ${pkgs[*]} against the base system with the given repositories" >&2
  echo "hint: check the package names and that the repositories are the target release's (baseos + appstream...)" >&2
  exit 1
fi
shopt -s nullglob
files=("$tmp"/dl/*.rpm)
if [ ${#files[@]} -eq 0 ]; then
  echo "note: the base system already has ${pkgs[*]} and everything they depend on" >&2
  echo "packages: []"
  exit 0
fi

# 2. each file's repository URL (by its NEVRA) and its sha256
nevras=()
for f in "${files[@]}"; do
  nevras+=("$(rpm -qp --qf '%{NAME}-%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}' "$f" 2>/dev/null)")
done
dnf "${dnf_opts[@]}" repoquery --location "${nevras[@]}" >"$tmp/locations" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
echo "# generated by scripts/rpm-closure.sh for ${pkgs[*]} (os $os, arch $arch)"
[ "$absolute" = true ] || echo "# urls are relative to the root of the distribution mirror: airgap build --mirror $os=URL"
echo "packages:"
for f in "${files[@]}"; do
  base="$(basename "$f")"
  url="$(grep -F "/$base" "$tmp/locations" | head -1 || true)"
  if [ -z "$url" ]; then
    echo "error: no repository location for $base" >&2
    exit 1
  fi
  [ "$absolute" = true ] || url="$(printf '%s' "$url" | sed -E 's#^[a-z+]+://[^/]+/##')"
  name="$(rpm -qp --qf '%{NAME}' "$f" 2>/dev/null)"
  sha="$(sha256sum "$f" | cut -d' ' -f1)"
  printf '  - os: %s\n    name: %s\n    url: %s\n    sha256: %s\n' "$os" "$name" "$url" "$sha"
done
