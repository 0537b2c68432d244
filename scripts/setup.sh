#!/usr/bin/env bash
# Idempotent set-up of a Debian 12 build and test machine (root, Node 20 already installed): the tools the lab and
# the tests run, the distribution's own etcd/HAProxy/keepalived services out of the way (said before it is done),
# pnpm, dependencies, build. It stops system services: meant for development and CI machines, not for a load
# balancer in production.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh must run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# Every tool the lab, the tests and the build run → the Debian package that provides it. Each tool is probed
# itself (on PATH), so a package that is installed but incomplete, or a tool from elsewhere, is judged correctly.
declare -A tool_package=(
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [haproxy]=haproxy
  [keepalived]=keepalived
  [ip]=iproute2
  [arping]=iputils-arping
  [ping]=iputils-ping
  [tcpdump]=tcpdump
  [nft]=nftables
  [sysctl]=procps
  [ps]=procps
  [python3]=python3
  [systemd-analyze]=systemd
  [g++]=build-essential
  [make]=build-essential
)
declare -A wanted=()
for tool in "${!tool_package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || wanted[${tool_package[$tool]}]=1
done
# The lab's helpers (test/lab/bin/*.py) need parts of the standard library that python3-minimal does not ship:
# import exactly what they import.
modules=$(sed -n -e 's/^import \([A-Za-z0-9_]*\).*/\1/p' -e 's/^from \([A-Za-z0-9_]*\) import.*/\1/p' \
  test/lab/bin/*.py | sort -u | paste -sd, -)
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import ${modules}" >/dev/null 2>&1; then
  wanted[libpython3-stdlib]=1
fi

if ((${#wanted[@]} > 0)); then
  missing=("${!wanted[@]}")
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages from starting their daemons during installation (they would bind ports and take VIPs).
  # An existing policy-rc.d is the machine owner's: it is left exactly as it is.
  policy=/usr/sbin/policy-rc.d
  ours=0
  if [[ -e $policy ]]; then
    log "keeping the existing $policy as it is (daemons the installation starts are dealt with below)"
  else
    printf '#!/bin/sh\n# coord scripts/setup.sh, for the duration of apt-get install\nexit 101\n' >"$policy"
    chmod +x "$policy"
    ours=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if ((ours)); then
    rm -f "$policy"
    trap - EXIT
  fi
  for tool in "${!tool_package[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "setup.sh: $tool is still missing after installing ${tool_package[$tool]}" >&2
      exit 1
    }
  done
  python3 -c "import ${modules}" || {
    echo "setup.sh: python3 cannot import ${modules}" >&2
    exit 1
  }
else
  log "every tool the lab uses is present"
fi

# The lab runs its own etcd, HAProxy and keepalived inside namespaces; system instances would hold the same ports
# and VIPs. Say what is about to be stopped or disabled before doing it, and touch only what is running/enabled.
services=(etcd haproxy keepalived)
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  for svc in "${services[@]}"; do
    unit="$svc.service"
    systemctl cat "$unit" >/dev/null 2>&1 || continue
    if systemctl is-active --quiet "$unit"; then
      log "stopping $unit: the lab runs its own $svc in network namespaces"
      systemctl stop "$unit"
    fi
    if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      log "disabling $unit so that it does not start at boot (undo: systemctl enable $unit)"
      systemctl disable --quiet "$unit"
    fi
  done
else
  # Without systemd, init scripts cannot be asked reliably (keepalived's answers 0 to anything without a config).
  # A system instance runs in this (the root) network namespace; lab instances (ours or anyone's) run in their
  # own.
  root_netns=$(readlink /proc/$$/ns/net)
  system_pids() {
    local exe pids=() p
    exe=$(command -v "$1") || return 0
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/exe" 2>/dev/null) == "$exe" && $(readlink "$p/ns/net" 2>/dev/null) == "$root_netns" ]] &&
        pids+=("${p#/proc/}")
    done
    echo "${pids[*]}"
  }
  for svc in "${services[@]}"; do
    [[ -x /etc/init.d/$svc ]] || continue
    pids=$(system_pids "$svc")
    if [[ -n $pids ]]; then
      log "stopping /etc/init.d/$svc (pid $pids in the root namespace): the lab runs its own $svc in network namespaces"
      /etc/init.d/"$svc" stop >/dev/null
    fi
  done
fi

if ! command -v pnpm >/dev/null 2>&1 || [[ $(pnpm --version) != 12.4.2 ]]; then
  log "installing pnpm@12.4.2"
  npm install -g pnpm@12.4.2
fi

export npm_config_nodedir=/usr
pnpm install --frozen-lockfile
pnpm build
log "done"
