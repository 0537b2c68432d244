#!/usr/bin/env bash
# Reproduces the figures in packages/vip/MEASURED.md: kernel lifetime expiry (with and without a refresh),
# warm netlink add/remove, announce() cost, and the arping fallback's spawn cost. Run as root from the
# repository root:  bash packages/vip/test/lab/measure.sh
# It creates one namespace with a veth pair (unique name), runs the lab driver inside it, and deletes it.
set -euo pipefail
ns="vipm-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns add "$ns"
ip -n "$ns" link add va type veth peer name vb
ip -n "$ns" link set va up
ip -n "$ns" link set vb up
ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0

cmds=()
cmd() { cmds+=("{\"id\":${#cmds[@]},\"iface\":\"va\",$1}"); }
for _ in 1 2 3 4 5; do cmd '"op":"expiry","cidr":"192.0.2.50/32","validSec":1'; done
for _ in 1 2 3; do
  cmd '"op":"expiry","cidr":"192.0.2.51/32","validSec":2'
  cmd '"op":"expiry","cidr":"192.0.2.52/32","validSec":2,"refreshAfterMs":1000'
  cmd '"op":"expiry","cidr":"2001:db8::50/128","validSec":1'
  cmd '"op":"expiry","cidr":"2001:db8::52/128","validSec":2,"refreshAfterMs":1000'
done
cmd '"op":"bench","cidr":"192.0.2.60/32","n":500'
cmd '"op":"bench","cidr":"2001:db8::60/128","n":500'
for _ in 1 2 3 4 5; do cmd '"op":"announceFallback","cidr":"192.0.2.70/32"'; done

# The driver answers each line; it is fed one command at a time so that runs do not overlap.
coproc DRV { ip netns exec "$ns" node --conditions=source --import tsx packages/vip/test/lab/driver.ts; }
read -r line <&"${DRV[0]}" # ready
for c in "${cmds[@]}"; do
  echo "$c" >&"${DRV[1]}"
  read -r line <&"${DRV[0]}"
  echo "$c -> $line"
done
exec {DRV[1]}>&-
wait "$DRV_PID" || true
