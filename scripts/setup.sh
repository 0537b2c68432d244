#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 (root, Node 20 already installed) for building and testing coord:
# system packages the lab needs, no system daemons of our own kind running, pnpm, dependencies, build.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh must run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# Package → a file it installs; only missing packages are installed (apt-get update only if needed).
declare -A probe=(
  [etcd-server]=/usr/bin/etcd
  [etcd-client]=/usr/bin/etcdctl
  [haproxy]=/usr/sbin/haproxy
  [keepalived]=/usr/sbin/keepalived
  [iproute2]=/usr/sbin/ip
  [iputils-arping]=/usr/bin/arping
  [iputils-ping]=/usr/bin/ping
  [tcpdump]=/usr/bin/tcpdump
  [nftables]=/usr/sbin/nft
  [procps]=/usr/sbin/sysctl
  [python3-minimal]=/usr/bin/python3
  [build-essential]=/usr/bin/g++
)
missing=()
for pkg in "${!probe[@]}"; do
  [[ -e ${probe[$pkg]} ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Do not let the packages start their daemons during installation (they would bind ports and take VIPs).
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "system packages present"
fi

# The lab runs its own etcd, HAProxy and keepalived inside namespaces; the system services must not run.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  for svc in etcd haproxy keepalived; do
    if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
      systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
    fi
  done
else
  for svc in etcd haproxy keepalived; do
    [[ -x /etc/init.d/$svc ]] && { /etc/init.d/"$svc" stop >/dev/null 2>&1 || true; }
  done
fi
log "system etcd/haproxy/keepalived services stopped and disabled"

if ! command -v pnpm >/dev/null 2>&1 || [[ $(pnpm --version) != 12.4.2 ]]; then
  log "installing pnpm@12.4.2"
  npm install -g pnpm@12.4.2
fi

export npm_config_nodedir=/usr
pnpm install --frozen-lockfile
pnpm build
log "done"
