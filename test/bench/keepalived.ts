/** keepalived as the benchmarks run it: one VRRPv3 instance on eth0, multicast, starting as BACKUP. */
export function keepalivedConf(o: {
  vrid: number;
  priority: number;
  advertInt: number;
  cidr: string;
}): string {
  return [
    'global_defs {',
    '  vrrp_version 3',
    '}',
    'vrrp_instance VI {',
    '  state BACKUP',
    '  interface eth0',
    `  virtual_router_id ${o.vrid}`,
    `  priority ${o.priority}`,
    `  advert_int ${o.advertInt}`,
    '  virtual_ipaddress {',
    `    ${o.cidr} dev eth0`,
    '  }',
    '}',
    '',
  ].join('\n');
}
