#!/usr/bin/env bash
# A hypervisor lab on one machine: tiny QEMU guests (software emulation) on two or three libvirt
# "hosts", each a separate libvirtd in its own mount and UTS namespace, listening on 127.0.0.1.
# Live migration between them works as between real hosts.
#
#   scripts/lab/lab.sh up [HOSTS]            # install what is missing, build the guest, start HOSTS (default 2) daemons
#   scripts/lab/lab.sh boot VM HOST [KNOBS]  # define and start a guest on host HOST (0, 1, 2)
#   scripts/lab/lab.sh migrate VM FROM TO    # live-migrate with virsh (the addresses these hosts need)
#   scripts/lab/lab.sh uri HOST              # the host's libvirt URI (qemu+tcp://127.0.0.1:PORT/system)
#   scripts/lab/lab.sh ticks VM              # the guest's serial console (one tick a second)
#   scripts/lab/lab.sh status                # daemons, guests and where they run
#   scripts/lab/lab.sh kill-host HOST | restart HOST   # SIGKILL a host's libvirtd / start it again
#   scripts/lab/lab.sh qemu-count VM         # QEMU processes running VM (on any host)
#   scripts/lab/lab.sh down                  # destroy every guest, stop the daemons, kill leftovers
#
# Guest KNOBS (kernel command line): busy=N (busy loops), busy_start=S, busy_stop=S (seconds after
# boot; default from boot, never), mem=MiB (default 128).
#
# Environment: KEEL_LAB_DIR (run state, default /tmp/keel-lab), KEEL_LAB_CACHE (guest image and the
# hosts' QEMU capability caches, kept across runs, default ~/.cache/keel/lab), KEEL_LAB_PORT
# (first host's libvirt TCP port, default 16609; host i listens on PORT+i).
set -euo pipefail

LAB="${KEEL_LAB_DIR:-/tmp/keel-lab}"
CACHE="${KEEL_LAB_CACHE:-$HOME/.cache/keel/lab}"
PORT0="${KEEL_LAB_PORT:-16609}"
GUEST="$CACHE/guest"
# Bump when the guest's /init changes: the cached image is rebuilt.
GUEST_VERSION=2
PACKAGES=(qemu-system-x86 busybox-static libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients)

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$1" "$(now)"; }

host_name() { printf 'lab-%s' "$(printf '%s' abc | cut -c$(($1 + 1)))"; }
host_port() { echo $((PORT0 + $1)); }
host_uri() { echo "qemu+tcp://127.0.0.1:$(host_port "$1")/system"; }
# QEMU's incoming-migration ports: a distinct range per host.
mig_min() { echo $((49300 + $1 * 20)); }
virsh_on() { local h="$1"; shift; virsh -q -c "$(host_uri "$h")" "$@"; }

# --- packages ----------------------------------------------------------------------------------
install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install --no-install-recommends ${missing[*]})"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Not libvirt-daemon-system: it pulls systemd; the daemons here are started by hand.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The QEMU driver wants this user and group even when QEMU runs as root.
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
}

# --- the guest: Debian's kernel as an ELF vmlinux + a busybox initramfs -----------------------
build_guest() {
  [ -s "$GUEST/vmlinux" ] && [ -s "$GUEST/initrd.gz" ] &&
    [ "$(cat "$GUEST/version" 2>/dev/null)" = "$GUEST_VERSION" ] && return 0
  log "building the guest in $GUEST"
  local tmp
  tmp="$(mktemp -d)"
  (
    cd "$tmp"
    local pkg
    pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    [ -n "$pkg" ] || die "no linux-image package named by linux-image-amd64"
    apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null || { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null; }
    # Extract the kernel and the virtio modules only (no install: no boot hooks run).
    dpkg-deb --fsys-tarfile ./"$pkg"_*.deb |
      tar -x --wildcards './boot/vmlinuz-*' '*/kernel/drivers/virtio/*'
    # The bzImage's payload is xz; QEMU boots the uncompressed ELF (PVH) much faster under TCG.
    local z off
    z="$(echo boot/vmlinuz-*)"
    off="$(grep -abo -m1 "$(printf '\xfd7zXZ')" "$z" | head -1 | cut -d: -f1)"
    [ -n "$off" ] || die "$z: no xz payload found"
    tail -c +$((off + 1)) "$z" | xz -dc --single-stream >vmlinux 2>/dev/null || true
    file vmlinux 2>/dev/null | grep -q ELF || head -c 4 vmlinux | grep -q ELF || die "could not unpack $z"
    mkdir -p root/bin root/proc root/sys root/dev root/tmp root/lib/modules
    cp /bin/busybox root/bin/busybox
    find lib -name '*.ko*' -path '*virtio*' -exec cp {} root/lib/modules/ \;
    cat >root/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# virtio_ring first, then the transport, then the balloon (memory figures for libvirt).
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
  for f in /lib/modules/$m.ko*; do [ -f "$f" ] && insmod "$f" 2>/dev/null; done
done
busy=0 busy_start=0 busy_stop=-1 name=guest
for a in $(cat /proc/cmdline); do
  case "$a" in
    keel.busy=*) busy="${a#keel.busy=}" ;;
    keel.busy_start=*) busy_start="${a#keel.busy_start=}" ;;
    keel.busy_stop=*) busy_stop="${a#keel.busy_stop=}" ;;
    keel.name=*) name="${a#keel.name=}" ;;
  esac
done
up() { read -r u _ </proc/uptime; echo "${u%%.*}"; }
# Busy loops: from busy_start to busy_stop seconds after boot (CPU only: the live migration of a
# guest that rewrites memory hard is unreliable in QEMU 7.2 under TCG).
i=0
while [ "$i" -lt "$busy" ]; do
  ( while [ "$(up)" -lt "$busy_start" ]; do sleep 1; done
    [ "$i" = 0 ] && echo "keel-busy $name on at $(up) s" >/dev/ttyS0
    if [ "$busy_stop" -ge 0 ]; then
      while [ "$(up)" -lt "$busy_stop" ]; do n=0; while [ $n -lt 500 ]; do n=$((n + 1)); done; done
      [ "$i" = 0 ] && echo "keel-busy $name off at $(up) s" >/dev/ttyS0
    else
      while :; do :; done
    fi ) &
  i=$((i + 1))
done
echo "keel-guest $name up, busy=$busy from $busy_start s to $busy_stop s" >/dev/ttyS0
# Liveness: one tick a second on the serial console; the count goes on across migrations.
t=0
while :; do
  echo "keel-tick $name $t uptime $(up)" >/dev/ttyS0
  t=$((t + 1))
  sleep 1
done
EOF
    chmod +x root/init
    (cd root && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >initrd.gz
    mkdir -p "$GUEST"
    mv vmlinux "$GUEST/vmlinux.tmp" && mv "$GUEST/vmlinux.tmp" "$GUEST/vmlinux"
    mv initrd.gz "$GUEST/initrd.gz.tmp" && mv "$GUEST/initrd.gz.tmp" "$GUEST/initrd.gz"
    echo "$GUEST_VERSION" >"$GUEST/version"
  )
  rm -rf "$tmp"
}

# --- the hosts ---------------------------------------------------------------------------------
start_host() {
  local i="$1" h name port
  h="$LAB/hosts/$i"
  name="$(host_name "$i")"
  port="$(host_port "$i")"
  mkdir -p "$h"/{etc/hooks,run,lib,log,pid} "$CACHE/hosts/$i" /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt
  cat >"$h/etc/libvirtd.conf" <<EOF
host_uuid = "$(printf '8e1c6a52-4b0e-4c3a-9d1f-%012d' "$((i + 1))")"
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
tcp_port = "$port"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  cat >"$h/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
migration_port_min = $(mig_min "$i")
migration_port_max = $(($(mig_min "$i") + 19))
EOF
  # A hook that refuses incoming migrations while $LAB/hosts/I/refuse exists (libvirt reads the
  # hook's presence at start, its exit status at each migration).
  cat >"$h/etc/hooks/qemu" <<EOF
#!/bin/sh
if [ "\$2" = migrate ] && [ -e "$h/refuse" ]; then
  echo "lab host $name refuses incoming migrations" >&2
  exit 1
fi
exit 0
EOF
  chmod +x "$h/etc/hooks/qemu"
  cp /etc/libvirt/libvirt.conf "$h/etc/" 2>/dev/null || true
  # Each daemon sees its own /etc, /run, /var/lib, /var/log and /var/cache for libvirt; the
  # capability cache is kept in $CACHE so later starts skip QEMU probing (~17 s -> <1 s).
  unshare --mount --uts --propagation private -- bash -c '
    set -e
    hostname "$1"
    mount --bind "$2/etc" /etc/libvirt
    mount --bind "$2/run" /run/libvirt
    mount --bind "$2/lib" /var/lib/libvirt
    mount --bind "$2/log" /var/log/libvirt
    mount --bind "$3" /var/cache/libvirt
    exec libvirtd --listen --pid-file "$2/pid/libvirtd.pid"
  ' lab "$name" "$h" "$CACHE/hosts/$i" >"$h/libvirtd.out" 2>&1 &
  echo $! >"$h/daemon.pid"
}

wait_host() {
  local i="$1" deadline=$((SECONDS + 90))
  until virsh -q -c "$(host_uri "$i")" version >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$LAB/hosts/$i/daemon.pid")" 2>/dev/null; then
      tail -20 "$LAB/hosts/$i/libvirtd.out" "$LAB/hosts/$i/log/libvirtd.log" >&2 || true
      die "host $i: libvirtd exited"
    fi
    ((SECONDS < deadline)) || die "host $i: libvirtd not answering on $(host_uri "$i") after 90 s"
    sleep 0.2
  done
}

cmd_up() {
  local n="${1:-2}" t0 i
  ((n >= 1 && n <= 3)) || die "HOSTS must be 1, 2 or 3"
  [ "$(id -u)" = 0 ] || die "the lab needs root (namespaces, bind mounts, libvirtd)"
  t0="$(now)"
  install_packages
  build_guest
  if [ -d "$LAB/hosts" ]; then
    log "a lab is already in $LAB; tearing it down first"
    cmd_down
  fi
  mkdir -p "$LAB/serial"
  echo "$n" >"$LAB/nhosts"
  for ((i = 0; i < n; i++)); do start_host "$i"; done
  for ((i = 0; i < n; i++)); do wait_host "$i"; done
  log "$n hosts up in $(since "$t0") s: $(for ((i = 0; i < n; i++)); do printf '%s ' "$(host_uri "$i")"; done)"
}

cmd_boot() {
  local vm="$1" i="$2" busy=0 bstart=0 bstop=-1 mem=128 kv
  shift 2
  for kv in "$@"; do
    case "$kv" in
      busy=*) busy="${kv#*=}" ;; busy_start=*) bstart="${kv#*=}" ;;
      busy_stop=*) bstop="${kv#*=}" ;; mem=*) mem="${kv#*=}" ;;
      *) die "unknown guest knob '$kv' (busy=N busy_start=S busy_stop=S mem=MiB)" ;;
    esac
  done
  [ -d "$LAB/hosts/$i" ] || die "host $i is not up (scripts/lab/lab.sh up)"
  local xml="$LAB/$vm.xml"
  : >"$LAB/serial/$vm.log"
  # type='qemu' (TCG): the paravirtual /dev/kvm here makes a stock guest kernel crawl.
  cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$vm</name>
  <memory unit='MiB'>$mem</memory>
  <currentMemory unit='MiB'>$mem</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST/vmlinux</kernel>
    <initrd>$GUEST/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 keel.name=$vm keel.busy=$busy keel.busy_start=$bstart keel.busy_stop=$bstop</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='$LAB/serial/$vm.log' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>
EOF
  virsh_on "$i" define "$xml" >/dev/null
  virsh_on "$i" start "$vm" >/dev/null
  log "$vm started on $(host_name "$i") (busy=$busy)"
}

# Waits until VM's serial console shows a tick (up to S seconds).
cmd_wait_tick() {
  local vm="$1" limit="${2:-60}" deadline
  deadline=$((SECONDS + limit))
  until grep -q "^keel-tick $vm " "$LAB/serial/$vm.log" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$vm: no tick on its console after $limit s"
    sleep 0.2
  done
}

cmd_migrate() {
  local vm="$1" from="$2" to="$3"
  # migration_address = 127.0.0.1 is refused by libvirt ("the address of the local machine"),
  # so the address goes on each call; the port comes from the target's migration range.
  virsh_on "$from" migrate --live --persistent --undefinesource --verbose "$vm" "$(host_uri "$to")" \
    --migrateuri tcp://127.0.0.1 --listen-address 127.0.0.1
}

cmd_status() {
  local n i
  n="$(cat "$LAB/nhosts" 2>/dev/null || echo 0)"
  for ((i = 0; i < n; i++)); do
    printf '%s %s pid %s: ' "$(host_name "$i")" "$(host_uri "$i")" "$(cat "$LAB/hosts/$i/daemon.pid" 2>/dev/null)"
    virsh_on "$i" list --all 2>/dev/null | awk '{printf "%s(%s) ", $2, $3}' || printf 'down'
    echo
  done
}

# Every process whose command line mentions PATTERN (a path of this lab), by pid.
lab_pids() {
  local p pattern="$1"
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$pattern" && echo "${p#/proc/}"
  done
  return 0
}

cmd_down() {
  local n i vm pid pids
  n="$(cat "$LAB/nhosts" 2>/dev/null || echo 3)"
  # Guests first: QEMU outlives its daemon.
  for ((i = 0; i < n; i++)); do
    [ -f "$LAB/hosts/$i/daemon.pid" ] || continue
    for vm in $(timeout 10 virsh -q -c "$(host_uri "$i")" list --all --name 2>/dev/null); do
      timeout 10 virsh -q -c "$(host_uri "$i")" destroy "$vm" >/dev/null 2>&1 || true
      timeout 10 virsh -q -c "$(host_uri "$i")" undefine "$vm" >/dev/null 2>&1 || true
    done
  done
  for ((i = 0; i < n; i++)); do
    pid="$(cat "$LAB/hosts/$i/daemon.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # Leftovers of this lab, whatever state it was left in: QEMU started from this lab's guest
  # image, daemons started with this lab's pid files.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(lab_pids "$GUEST/vmlinux"; lab_pids "$LAB/hosts/")"
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    sleep 0.3
  done
  pids="$(lab_pids "$GUEST/vmlinux"; lab_pids "$LAB/hosts/")"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.3
  fi
  pids="$(lab_pids "$GUEST/vmlinux"; lab_pids "$LAB/hosts/")"
  [ -z "$pids" ] || die "processes left: $pids"
  # The mount namespaces went with their last process; only files remain.
  rm -rf "$LAB/hosts" "$LAB/nhosts"
  log "down: no lab guest or daemon left"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  boot) shift; [ $# -ge 2 ] || die "usage: boot VM HOST [KNOBS]"; cmd_boot "$@" ;;
  wait-tick) shift; cmd_wait_tick "$@" ;;
  migrate) shift; [ $# = 3 ] || die "usage: migrate VM FROM TO"; cmd_migrate "$@" ;;
  restart) [ -d "$LAB/hosts/$2" ] || die "host $2 was never up"; start_host "$2"; wait_host "$2" ;;
  kill-host) kill -9 "$(cat "$LAB/hosts/$2/daemon.pid")" ;;
  qemu-count) lab_pids "guest=$2," | wc -l ;;
  uri) host_uri "$2" ;;
  port) host_port "$2" ;;
  ticks) cat "$LAB/serial/$2.log" ;;
  status) cmd_status ;;
  guest) build_guest; echo "$GUEST" ;;
  install) install_packages ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
