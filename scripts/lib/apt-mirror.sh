#!/usr/bin/env bash
# Sourced by scripts that need the Debian mirror of THIS machine's apt configuration (lab.sh's debootstrap,
# fetch-containerd2.sh's sid index): never a hard-coded host. The sourcing script defines `die`.

# The Debian mirror apt uses on this machine (deb822 sources first, then the one-line format).
mirror() {
  local m=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  echo "$m"
}
