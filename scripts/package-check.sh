#!/usr/bin/env bash
# The Debian package as an operator gets it (CI runs this after the tests): build it, lintian, install it on this
# machine with apt, check the installed files, run a lab failover (crash and graceful stop) with the installed
# /usr/bin/coord, remove it (only the conffiles stay), purge it (nothing stays). Needs root and a set-up checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[package-check] %s\n' "$*"; }
fail() {
  printf '[package-check] FAILED: %s\n' "$*" >&2
  exit 1
}

if dpkg -s coord >/dev/null 2>&1; then
  fail "a coord package is already installed here; purge it first (apt-get purge coord)"
fi

log "building the package"
pnpm package
arch=$(dpkg --print-architecture)
version=$(node -p "require('./packages/cli/package.json').version")
deb="build/coord_${version}_${arch}.deb"
[[ -f $deb ]] || fail "$deb was not built"
log "$deb: $(du -h "$deb" | cut -f1)"

log "lintian (errors fail)"
lintian --allow-root --tag-display-limit 0 --fail-on error "$deb"

# The postinst applies the non-local bind setting to this host, and a purge leaves the running value (Debian's
# way: the drop-in goes, the value lasts until reboot). This host is not a load balancer: put them back after.
nonlocal4=$(sysctl -n net.ipv4.ip_nonlocal_bind)
nonlocal6=$(sysctl -n net.ipv6.ip_nonlocal_bind 2>/dev/null || true) # empty: IPv6 is off here
cleanup() {
  if dpkg -s coord >/dev/null 2>&1 || dpkg -l coord 2>/dev/null | grep -q '^rc'; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq coord >/dev/null 2>&1 || true
  fi
  sysctl -q -w "net.ipv4.ip_nonlocal_bind=$nonlocal4" || true
  [[ -z $nonlocal6 ]] || sysctl -q -w "net.ipv6.ip_nonlocal_bind=$nonlocal6" || true
}
trap cleanup EXIT

log "installing with apt (Debian's own packages only, no network needed for coord itself)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "./$deb" >/dev/null

[[ $(/usr/bin/coord --version) == "$version" ]] || fail "coord --version does not print $version"
/usr/bin/coord check-config /etc/coord/coord.yaml || fail "the shipped /etc/coord/coord.yaml does not check"
# The bundled CLI: a command's help, laid out.
help=$(/usr/bin/coord drill --help) || fail "coord drill --help failed"
[[ $help == *--max-gap* ]] || fail "coord drill --help does not list its flags"
systemd-analyze verify /lib/systemd/system/coord.service || fail "systemd-analyze verify coord.service"
for f in /usr/share/man/man8/coord.8.gz /usr/share/man/man5/coord.yaml.5.gz \
  /usr/share/bash-completion/completions/coord /usr/lib/sysctl.d/99-coord.conf /etc/coord/haproxy-base.cfg \
  /usr/share/doc/coord/copyright; do
  [[ -s $f ]] || fail "$f is missing"
done
man -l /usr/share/man/man8/coord.8.gz >/dev/null 2>&1 || fail "man coord does not render"
[[ $(sysctl -n net.ipv4.ip_nonlocal_bind) == 1 ]] || fail "postinst did not apply net.ipv4.ip_nonlocal_bind"
log "installed files check out"
# As an operator would once the config is this node's (no systemd needed here: enable only makes the links).
systemctl enable coord.service >/dev/null 2>&1 || fail "systemctl enable coord.service"
wants=/etc/systemd/system/multi-user.target.wants/coord.service
[[ -L $wants ]] || fail "systemctl enable made no $wants"
# What coord renders at the default path (a purge takes it, and its last good copy).
touch /etc/haproxy/coord.cfg /etc/haproxy/coord.cfg.last-good

log "lab failover with the installed /usr/bin/coord (crash, graceful stop)"
COORD_COMMAND=/usr/bin/coord pnpm exec vitest run --project lab test/election.test.ts \
  -t 'fails over after kill -9|on SIGTERM the holder'
log "the installed coord fence after a kill of coord and its helper (the unit's ExecStopPost)"
COORD_COMMAND=/usr/bin/coord pnpm exec vitest run --project lab test/host-safety.test.ts -t 'coord fence'

log "remove: only the conffiles stay"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq coord >/dev/null
dpkg -l coord | grep -q '^rc' || fail "after remove, coord is not in the config-files state"
for f in /usr/bin/coord /usr/lib/coord /lib/systemd/system/coord.service /usr/share/man/man8/coord.8.gz; do
  [[ ! -e $f ]] || fail "$f is still there after remove"
done
[[ -f /etc/coord/coord.yaml ]] || fail "remove took the conffile /etc/coord/coord.yaml"

log "purge: nothing stays"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq coord >/dev/null
! dpkg -l coord 2>/dev/null | grep -q '^[a-z][a-z] *coord' || fail "dpkg still knows coord after purge"
for f in /etc/coord /var/lib/coord /usr/lib/coord /usr/bin/coord /etc/haproxy/coord.cfg \
  /etc/haproxy/coord.cfg.last-good "$wants"; do
  [[ ! -e $f && ! -L $f ]] || fail "$f is still there after purge"
done
cleanup
trap - EXIT
log "ok"
