#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine (as root) to run and test fastnet.
# Idempotent: every step checks before it changes anything, so a second run does nothing new.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FASTNET_VENV:-$REPO/.venv}"
SYSTEM_PYTHON=/usr/bin/python3   # bcc is packaged for the distribution's interpreter only

# System packages: bcc and its Python binding, the networking tools fastnet drives, and what the
# tests and `fastnet bench` run (scapy crafts packets itself; iperf3/sockperf/wrk generate load).
PACKAGES=(
  python3-bpfcc bpfcc-tools libbpf1 bpftool python3-venv python3-dev
  linux-libc-dev                      # uapi linux/bpf.h: attach types by name (datapath/uapi.py)
  iproute2 ethtool iputils-ping netcat-openbsd tcpdump
  iptables nftables conntrack iperf3 sockperf wrk dnsutils dnsperf
  podman crun containernetworking-plugins busybox-static   # fastnet-cni under podman (tests/integration/test_podman.py)
  etcd-server etcd-client   # the store of overlay networks (tests/integration/test_overlay.py starts etcd itself)
)

log() { printf 'setup: %s\n' "$*"; }

if [[ $EUID -ne 0 ]]; then
  echo "setup: must run as root (it installs packages and mounts bpffs)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# bcc compiles against kernel headers. When the running kernel ships none, the distribution's
# generic headers are enough for TC programs that use only UAPI headers (see shared PLATFORM notes).
KVER="$(uname -r)"
MODDIR="/lib/modules/$KVER"
need_headers_fallback=0
if [[ ! -e "$MODDIR/build/include" ]]; then
  if apt-cache policy "linux-headers-$KVER" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    missing+=("linux-headers-$KVER")
  else
    need_headers_fallback=1
    dpkg-query -W -f='${Status}' linux-headers-amd64 2>/dev/null | grep -q "install ok installed" \
      || missing+=(linux-headers-amd64)
  fi
fi

if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ((need_headers_fallback)) && [[ ! -e "$MODDIR/build/include" ]]; then
  build="$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)"
  common="$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1)"
  [[ -n "$build" && -n "$common" ]] || { echo "setup: no kernel headers found under /usr/src" >&2; exit 1; }
  log "kernel $KVER has no headers: using $build"
  mkdir -p "$MODDIR"
  ln -sfn "$build" "$MODDIR/build"
  ln -sfn "$common" "$MODDIR/source"
fi

# bpffs at its conventional place, for bpftool and for users; fastnet itself mounts a private
# instance per host inside its agent's mount namespace.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  log "mounting bpffs on /sys/fs/bpf"
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  "$SYSTEM_PYTHON" -m venv --system-site-packages "$VENV"
fi

stamp="$VENV/.fastnet-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing fastnet (editable) into $VENV"
  # pip's build chatter goes to a log, shown only when the install fails
  if ! { "$VENV/bin/pip" install -q --upgrade pip && "$VENV/bin/pip" install -q -e "$REPO[test]"; } \
      >"$VENV/install.log" 2>&1; then
    cat "$VENV/install.log" >&2
    echo "setup: installing fastnet failed (log above, also in $VENV/install.log)" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi

if [[ "$(readlink -f /usr/local/bin/fastnet 2>/dev/null)" != "$VENV/bin/fastnet" ]]; then
  log "linking /usr/local/bin/fastnet"
  ln -sfn "$VENV/bin/fastnet" /usr/local/bin/fastnet
fi

# fastnet-cni where runtimes look for CNI plugins: the CNI convention's directory and the
# distribution's (podman's default cni_plugin_dirs hold both).
for dir in /opt/cni/bin /usr/lib/cni; do
  if [[ "$(readlink -f "$dir/fastnet-cni" 2>/dev/null)" != "$VENV/bin/fastnet-cni" ]]; then
    log "linking $dir/fastnet-cni"
    mkdir -p "$dir"
    ln -sfn "$VENV/bin/fastnet-cni" "$dir/fastnet-cni"
  fi
done

"$VENV/bin/python" -c 'import bcc, pyroute2, scapy' || { echo "setup: venv cannot import bcc/pyroute2/scapy" >&2; exit 1; }
log "ready"
