#!/bin/bash
# A multi-host lab on this one machine: N systemd-nspawn nodes that boot their own systemd from a cached
# minimal Debian rootfs, each in its own network namespace on one bridge, with its own hostname, sshd and
# overlay filesystem. The deploy machine (this host) reaches them over SSH through a root-namespace veth leg.
#
# Usage: scripts/lab.sh up [N] | down | reset | status | ssh NODE [CMD...] | exec NODE CMD... | rootfs | inventory [N]
#   reset: every node back to the state `up` leaves it in (powered off, overlay upper dir cleared, network
#   namespace made again, booted, sshd answering); what the tests do between two tests on one lab.
#
# Environment (so that tests can run their own lab next to a person's):
#   LAB_ID    short id used in netns, bridge, veth and cgroup names (default: agl; at most 6 characters)
#   LAB_DIR   state dir: SSH key, per-node overlays, PIDs, logs (default: /var/tmp/airgap-lab-$LAB_ID)
#   LAB_NET   first three octets of the lab's /24 (default: 10.77.0); the host leg is .1, nodes .11, .12, ...
#   LAB_CACHE rootfs cache (default: /var/cache/airgap-lab); the rootfs is built once by debootstrap
#   LAB_BOOT_TIMEOUT  seconds a node may take to boot (systemd up, sshd answering; default 180)
# Nodes: master1..master3 then worker1..; N defaults to 5 (3 masters, 2 workers).
# Needs root and the Debian packages systemd-container, debootstrap, openssh-client, iproute2, util-linux.
set -euo pipefail

LAB_ID=${LAB_ID:-agl}
LAB_DIR=${LAB_DIR:-/var/tmp/airgap-lab-$LAB_ID}
LAB_NET=${LAB_NET:-10.77.0}
LAB_CACHE=${LAB_CACHE:-/var/cache/airgap-lab}
SUITE=bookworm
ROOTFS=$LAB_CACHE/rootfs-$SUITE
CG=airgap-lab-$LAB_ID
[ ${#LAB_ID} -le 6 ] || { echo "error: LAB_ID must be at most 6 characters (interface names are short)" >&2; exit 2; }

log() { echo "lab[$LAB_ID]: $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }
# wait_for TENTHS CMD...: poll CMD every 0.1 s until it succeeds, at most TENTHS tenths of a second (then fail).
# The one poll loop of the lab: everything else waits on a condition through it.
wait_for() {
  local n=$1 i; shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done   # the poll period
  "$@"
}

node_names() {  # node_names N -> master1..3 worker1..
  local n=$1 i
  for i in $(seq 1 "$n"); do
    if [ "$i" -le 3 ]; then echo "master$i"; else echo "worker$((i - 3))"; fi
  done
}
lab_nodes() { if [ -f "$LAB_DIR/nodes.list" ]; then cat "$LAB_DIR/nodes.list"; fi; }
node_index() { grep -nx "$1" "$LAB_DIR/nodes.list" | cut -d: -f1; }
node_addr() { echo "$LAB_NET.$((10 + $(node_index "$1")))"; }
netns_of() { echo "$LAB_ID-$1"; }

# shellcheck disable=SC1091  # scripts/lib/apt-mirror.sh, itself checked with the other scripts
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt-mirror.sh"

# The minimal rootfs, built once (flock: two labs starting together build it once). No keepalived, haproxy,
# nginx or containerd: a later step installs them offline from the bundle.
rootfs() {
  mkdir -p "$LAB_CACHE"
  exec 9>"$LAB_CACHE/.lock"
  flock 9
  if [ ! -f "$ROOTFS/.airgap-lab-complete" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap systemd-container"
    log "building the $SUITE rootfs with debootstrap from $(mirror) (once, ~45 s)"
    rm -rf "$ROOTFS" "$ROOTFS.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,kmod \
      "$SUITE" "$ROOTFS.tmp" "$(mirror)" >"$LAB_CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed: see $LAB_CACHE/debootstrap.log"
    : >"$ROOTFS.tmp/etc/machine-id"            # each node gets its own machine id at boot
    rm -f "$ROOTFS.tmp/etc/hostname" "$ROOTFS.tmp"/etc/ssh/ssh_host_*   # per node, generated at `up`
    mkdir -p "$ROOTFS.tmp/root/.ssh"
    chmod 700 "$ROOTFS.tmp/root/.ssh"
    # no getty on the (passive) console, no apt timers
    rm -f "$ROOTFS.tmp"/etc/systemd/system/getty.target.wants/* \
      "$ROOTFS.tmp"/etc/systemd/system/timers.target.wants/apt-daily*
    apt-get clean -o RootDir="$ROOTFS.tmp" 2>/dev/null || rm -rf "$ROOTFS.tmp"/var/cache/apt/archives/*.deb
    touch "$ROOTFS.tmp/.airgap-lab-complete"
    mv "$ROOTFS.tmp" "$ROOTFS"
  fi
  flock -u 9
}

cg_dirs() { for h in systemd unified; do [ -d "/sys/fs/cgroup/$h" ] && echo "/sys/fs/cgroup/$h/$CG/$1"; done; true; }

net_up() {
  local br="$LAB_ID-br" i=0 n
  ip netns add "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  ip link add "$LAB_ID-host" type veth peer name p0 netns "$br"   # root-namespace leg: ssh from the deploy host
  ip -n "$br" link set p0 master br0 up
  ip addr add "$LAB_NET.1/24" dev "$LAB_ID-host"
  ip link set "$LAB_ID-host" up
  for n in "$@"; do i=$((i + 1)); net_node "$n" "$i"; done
}

net_node() {  # net_node NAME INDEX: the node's own network namespace, eth0 on the bridge as port pINDEX
  local n=$1 i=$2 br="$LAB_ID-br" ns
  ns=$(netns_of "$n")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$br" link add "p$i" type veth peer name eth0 netns "$ns"
  ip -n "$br" link set "p$i" master br0 up
  ip -n "$ns" addr add "$LAB_NET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
}

node_up() {
  local n=$1 B=$LAB_DIR/nodes/$1
  mkdir -p "$B/upper" "$B/work" "$B/merged"
  mountpoint -q "$B/merged" || mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$B/upper,workdir=$B/work" "$B/merged"
  [ -f "$B/merged/etc/hostname" ] || echo "$n" >"$B/merged/etc/hostname"
  # its own machine id, as a separately installed machine has (preflight rejects clones)
  [ -s "$B/merged/etc/machine-id" ] || tr -d '-' </proc/sys/kernel/random/uuid >"$B/merged/etc/machine-id"
  install -m 600 "$LAB_DIR/id_lab.pub" "$B/merged/root/.ssh/authorized_keys"
  [ -f "$B/merged/etc/ssh/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$n" -f "$B/merged/etc/ssh/ssh_host_ed25519_key"
  # /proc/sys/net is the node's own (its netns): writable, as on a real host (SYSTEMD_NSPAWN_API_VFS_WRITABLE).
  # Each node starts from its own cgroup: nspawn --keep-unit puts payload/ and supervisor/ under its caller's.
  local dirs; dirs=$(cg_dirs "$n" | tr '\n' ' ')
  # shellcheck disable=SC2016 # $$, $! and $? are the wrapper's own
  setsid bash -c '
    for d in '"$dirs"'; do mkdir -p "$d"; echo $$ > "$d/cgroup.procs"; done
    while :; do
      SYSTEMD_NSPAWN_API_VFS_WRITABLE=network nsenter --net=/run/netns/'"$(netns_of "$n")"' systemd-nspawn -q -b -D '"$B"'/merged --machine '"$LAB_ID-$n"' \
        --hostname='"$n"' --register=no --keep-unit --console=passive --capability=CAP_NET_ADMIN \
        --network-namespace-path=/run/netns/'"$(netns_of "$n")"' &
      echo $! > '"$B"'/nspawn.pid
      wait $! && exit 0
      [ $? = 133 ] || exit 1   # 133: the node rebooted itself: boot it again
    done' >"$B/console.log" 2>&1 </dev/null &
  echo $! >"$B/wrapper.pid"
}

leader() {  # PID of the node's init (the nspawn child)
  local p; p=$(cat "$LAB_DIR/nodes/$1/nspawn.pid" 2>/dev/null) || return 1
  ps -o pid= --ppid "$p" | tr -d ' ' | head -1
}

node_ready() {  # the node's systemd has finished booting and its sshd lets us in
  local p
  p=$(leader "$1" 2>/dev/null || true)
  [ -n "$p" ] && nsenter -t "$p" -a systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' \
    && ssh_node "$1" true 2>/dev/null
}

wait_ready() {  # LAB_BOOT_TIMEOUT (s, default 180): a busy 2-core machine boots 5 nodes in 3-60 s
  local limit=${LAB_BOOT_TIMEOUT:-180}
  wait_for $((limit * 10)) node_ready "$1" \
    || die "node $1 ($(node_addr "$1")) did not come up within $limit s: see $LAB_DIR/nodes/$1/console.log"
}

SSH_OPTS=(-i "$LAB_DIR/id_lab" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5)
# shellcheck disable=SC2029 # the command runs on the node, as given
ssh_node() { local n=$1; shift; ssh "${SSH_OPTS[@]}" "root@$(node_addr "$n")" "$@"; }

node_signal() {  # ask a node to power off: the wrapper first (no restart loop), then nspawn (orderly poweroff)
  local B=$LAB_DIR/nodes/$1 w s
  w=$(cat "$B/wrapper.pid" 2>/dev/null || true)
  s=$(cat "$B/nspawn.pid" 2>/dev/null || true)
  if [ -n "$w" ]; then kill -TERM "$w" 2>/dev/null || true; fi
  if [ -n "$s" ]; then kill -TERM "$s" 2>/dev/null || true; fi
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
dead() { ! alive "$1"; }
cg_procs() { local d; for d in $(cg_dirs "$1"); do [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done; true; }
cg_empty() {  # no process left in the node's cgroups
  [ -z "$(cg_procs "$1")" ]
}

node_reap() {  # node_reap NODE [TENTHS]: wait for the node's poweroff (10 s at most), kill what is left by PID,
  local B=$LAB_DIR/nodes/$1 w s d p   # unmount, remove its cgroups
  w=$(cat "$B/wrapper.pid" 2>/dev/null || true)
  s=$(cat "$B/nspawn.pid" 2>/dev/null || true)
  wait_for "${2:-100}" dead "$s" || true
  if alive "$s"; then kill -KILL "$s" 2>/dev/null || true; fi
  if alive "$w"; then kill -KILL "$w" 2>/dev/null || true; fi
  for p in $(cg_procs "$1"); do kill -KILL "$p" 2>/dev/null || true; done
  wait_for 50 cg_empty "$1" || log "$1: processes left in its cgroup after SIGKILL"
  mountpoint -q "$B/merged" && { umount "$B/merged" 2>/dev/null || umount -l "$B/merged"; }
  for d in $(cg_dirs "$1"); do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -f "$B/wrapper.pid" "$B/nspawn.pid"
}

all_off() {  # every node's nspawn has exited
  local x
  for x in $(lab_nodes); do alive "$(cat "$LAB_DIR/nodes/$x/nspawn.pid" 2>/dev/null || true)" && return 1; done
  true
}

node_stop() { node_signal "$1"; node_reap "$1"; }

cmd_up() {
  local n=${1:-5}
  [ "$(id -u)" = 0 ] || die "the lab needs root (network namespaces, mounts, cgroups)"
  command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing: apt-get install systemd-container"
  [ -f "$LAB_DIR/nodes.list" ] && die "lab $LAB_ID is already up ($LAB_DIR): run '$0 down' first"
  ip -br addr | grep -q " $LAB_NET\." && die "$LAB_NET.0/24 is already used on this host: set LAB_NET"
  rootfs
  mkdir -p "$LAB_DIR/nodes"
  [ -f "$LAB_DIR/id_lab" ] || ssh-keygen -q -t ed25519 -N '' -C "airgap-lab-$LAB_ID" -f "$LAB_DIR/id_lab"
  node_names "$n" >"$LAB_DIR/nodes.list"
  mapfile -t names <"$LAB_DIR/nodes.list"
  net_up "${names[@]}"
  local t0=$SECONDS
  for x in "${names[@]}"; do node_up "$x"; done
  for x in "${names[@]}"; do wait_ready "$x"; done
  log "${#names[@]} nodes up in $((SECONDS - t0)) s: $(for x in "${names[@]}"; do printf '%s=%s ' "$x" "$(node_addr "$x")"; done)"
}

cmd_down() {
  local x left
  for x in $(lab_nodes); do node_signal "$x"; done   # all nodes power off together, 10 s at most in all
  wait_for 100 all_off || true
  for x in $(lab_nodes); do node_reap "$x" 0; done
  for x in $(lab_nodes); do ip netns del "$(netns_of "$x")" 2>/dev/null || true; done
  ip link del "$LAB_ID-host" 2>/dev/null || true
  ip netns del "$LAB_ID-br" 2>/dev/null || true
  for h in systemd unified; do rmdir "/sys/fs/cgroup/$h/$CG" 2>/dev/null || true; done
  rm -rf "$LAB_DIR/nodes" "$LAB_DIR/nodes.list"
  # nothing of the lab may be left: name what is
  left=$(ip netns list | awk -v p="$LAB_ID-" 'index($1, p) == 1 {print $1}' | tr '\n' ' ')
  for h in systemd unified; do [ -d "/sys/fs/cgroup/$h/$CG" ] && left+="/sys/fs/cgroup/$h/$CG "; done
  ip link show "$LAB_ID-host" >/dev/null 2>&1 && left+="$LAB_ID-host "
  [ -z "$left" ] || die "lab $LAB_ID: left behind after down: $left"
}

# Every node back to a fresh boot: killed (all together), drop the overlay's upper dir (every file a test
# wrote), make the network namespace again (addresses, VIPs, renamed or downed links, per-netns sysctls,
# firewall rules), boot, wait for systemd and sshd. New host keys and machine ids, as after `up`.
cmd_reset() {
  local x i=0 t0 p
  [ -f "$LAB_DIR/nodes.list" ] || die "lab $LAB_ID is not up ($LAB_DIR)"
  t0=$(date +%s.%N)
  mapfile -t names <"$LAB_DIR/nodes.list"
  # no orderly poweroff: everything the node wrote is thrown away. The wrapper first (it would boot it again).
  for x in "${names[@]}"; do
    p=$(cat "$LAB_DIR/nodes/$x/wrapper.pid" 2>/dev/null || true)
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  for x in "${names[@]}"; do node_reap "$x" 0 & done   # the nodes in parallel
  wait
  for x in "${names[@]}"; do
    i=$((i + 1))
    rm -rf --one-file-system "$LAB_DIR/nodes/$x/upper" "$LAB_DIR/nodes/$x/work"
    ip netns del "$(netns_of "$x")" 2>/dev/null || true
    ip -n "$LAB_ID-br" link del "p$i" 2>/dev/null || true   # a stray process may still hold the old netns
    net_node "$x" "$i"
  done
  ip neigh flush dev "$LAB_ID-host" 2>/dev/null || true   # the VIPs' old MAC addresses
  for x in "${names[@]}"; do node_up "$x"; done
  for x in "${names[@]}"; do wait_ready "$x"; done
  log "${#names[@]} nodes reset in $(echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f') s"
}

cmd_status() {
  local x p st
  [ -f "$LAB_DIR/nodes.list" ] || { echo "lab $LAB_ID is down"; return 0; }
  for x in $(lab_nodes); do
    p=$(leader "$x" 2>/dev/null || true)
    st=stopped
    [ -n "$p" ] && st=$(nsenter -t "$p" -a systemctl is-system-running 2>/dev/null || true)
    printf '%-10s %-15s %s\n' "$x" "$(node_addr "$x")" "${st:-unknown}"
  done
}

# A ready-to-use inventory for this lab (thresholds lowered for the lab's small nodes).
cmd_inventory() {  # cmd_inventory [N]: the first N nodes only
  local x limit=${1:-0} i=0
  cat <<EOF
cluster:
  name: lab-$LAB_ID
  kubernetes_version: 1.36.3
ssh:
  user: root
  key_file: $LAB_DIR/id_lab
nodes:
EOF
  for x in $(lab_nodes); do
    i=$((i + 1))
    [ "$limit" -gt 0 ] && [ "$i" -gt "$limit" ] && break
    printf '  - name: %s\n    address: %s\n    role: %s\n' "$x" "$(node_addr "$x")" "${x%%[0-9]*}"
  done
  cat <<EOF
vips:
  masters: $LAB_NET.100
  workers: $LAB_NET.200
network:
  node_subnet: $LAB_NET.0/24
EOF
}

case ${1:-} in
  up) cmd_up "${2:-5}" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  rootfs) rootfs ;;
  inventory) cmd_inventory "${2:-0}" ;;
  reset) cmd_reset ;;
  ssh) [ $# -ge 2 ] || die "usage: $0 ssh NODE [CMD...]"; n=$2; shift 2; exec ssh "${SSH_OPTS[@]}" -t "root@$(node_addr "$n")" "$@" ;;
  exec) [ $# -ge 3 ] || die "usage: $0 exec NODE CMD..."; n=$2; shift 2; p=$(leader "$n") || die "node $n is not running"
        exec nsenter -t "$p" -a "$@" ;;
  stop-node) node_stop "$2" ;;
  start-node) node_up "$2"; wait_ready "$2" ;;
  *) echo "usage: $0 up [N] | down | reset | status | ssh NODE [CMD...] | exec NODE CMD... | stop-node NODE | start-node NODE | rootfs | inventory" >&2; exit 2 ;;
esac
