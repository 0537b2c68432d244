#!/usr/bin/env bash
# Idempotent set-up of a Debian 12 development, lab or CI machine (root, Node 20 already installed): the tools the
# lab, the tests, the build and the package build run, pnpm, dependencies, build. It is not how coord is installed
# on a load balancer — that is the Debian package (pnpm package; README "Install"). It never stops, disables or
# reconfigures a service: the lab runs its own etcd, HAProxy and keepalived inside network namespaces, so the
# system's instances (if any) do not get in its way.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh must run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# Node: the version package.json asks for, with its headers where the native addons' build looks (nodedir=/usr,
# as Debian's and NodeSource's nodejs packages install them). Said now rather than deep inside node-gyp.
node_ok=$(node -e 'const [a, b] = process.versions.node.split(".").map(Number); console.log(a > 20 || (a === 20 && b >= 19) ? 1 : 0)' 2>/dev/null || echo 0)
if [[ $node_ok != 1 ]]; then
  echo "setup.sh: needs Node >= 20.19 on PATH (found: $(node --version 2>/dev/null || echo none)); install nodejs 20 from NodeSource's Debian package" >&2
  exit 1
fi
if [[ ! -f /usr/include/node/node_api.h ]]; then
  echo "setup.sh: Node's headers are not in /usr/include/node (the native addons build against them); install Node as a Debian package (NodeSource's nodejs ships them)" >&2
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
  [chrt]=util-linux
  [ps]=procps
  [python3]=python3
  [systemd-analyze]=systemd
  [g++]=build-essential
  [make]=build-essential
  [strip]=binutils
  [openssl]=openssl
  [lintian]=lintian
  [man]=man-db
  [groff]=groff-base
  [promtool]=prometheus
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
  # Keep the packages being installed from starting their daemons (a fresh etcd or keepalived has nothing to do here).
  # An existing policy-rc.d is the machine owner's: it is left exactly as it is.
  policy=/usr/sbin/policy-rc.d
  ours=0
  if [[ -e $policy ]]; then
    log "keeping the existing $policy as it is (the packages installed now may start their daemons)"
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

if ! command -v pnpm >/dev/null 2>&1 || [[ $(pnpm --version) != 12.4.2 ]]; then
  log "installing pnpm@12.4.2"
  npm install -g pnpm@12.4.2
fi

export npm_config_nodedir=/usr
pnpm install --frozen-lockfile
pnpm build
log "done"
