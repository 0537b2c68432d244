import type { Lab } from './lab.js';

/** A human-readable summary of a running lab: what to type to get into it. */
export function describeLab(lab: Lab): string {
  const lines = [
    `lab ${lab.prefix}  subnet ${lab.subnet.base}/${lab.subnet.prefix}  run dir ${lab.runDir}`,
    `  etcd   ns ${lab.etcd.host.ns}  endpoints ${lab.etcd.endpoints.join(',')}`,
    ...lab.hosts.map((h) => `  ${h.name.padEnd(6)} ns ${h.ns}  ${h.iface} ${h.ip}  ${h.mac}`),
    `  client ns ${lab.client.ns}  ${lab.client.iface} ${lab.client.ip}  ${lab.client.mac}`,
    `  VIPs   ${lab.freeAddress(1)} … ${lab.freeAddress(9)} are free`,
    `  try    ip netns exec ${lab.hosts[0]?.ns ?? ''} etcdctl --endpoints ${lab.etcd.endpoints[0] ?? ''} member list`,
  ];
  return lines.join('\n');
}
