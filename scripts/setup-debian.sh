#!/usr/bin/env bash
# Install what airgap's demo and tests need on a Debian 12 machine (idempotent; quick when all is there).
# Needs root (or sudo). The Rust toolchain itself is expected to be installed (rustup / cargo).
set -euo pipefail

PACKAGES=(
  # stock verifiers and archive tools the tests compare against
  minisign zstd tar gzip coreutils curl openssl ca-certificates time bc
  # the reference registry (upstream + peer) and its real clients
  docker-registry apache2-utils skopeo containerd runc containernetworking-plugins
  # RHEL-family package handling (rpm queries and installs into a scratch root; dnf for scripts/rpm-closure.sh)
  rpm dnf createrepo-c
  # daemons the installer configures, checked with their own config checkers
  keepalived haproxy nginx libnginx-mod-stream redis-server
  # the NFS step's checkers: drbdadm dump (DRBD resource), shellcheck (keepalived scripts)
  drbd-utils shellcheck
  # the multi-host lab: systemd-nspawn nodes with sshd, network namespaces
  systemd-container debootstrap openssh-server openssh-client iproute2 procps psmisc util-linux
  # harness helpers
  python3
  # the scripts are checked by shellcheck (tests/it/scripts.rs)
  shellcheck
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # policy-rc.d: do not start the daemons we install (the tests start their own copies)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# deb-closure.sh (and the lab's debootstrap) read apt's package lists: make sure there are some
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
fi
# containerd 2.x (Debian sid's package, apt-verified, unpacked under /var/cache/airgap-test/containerd2, never
# installed over bookworm's 1.6) for the tests of the runtime step's containerd config under both
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO bash "$(dirname "$0")/fetch-containerd2.sh"
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
