/**
 * @coord/lab — network namespaces, a real etcd cluster, faults and observers: the place where coord's claims
 * (one holder, bounded failover, hitless reloads) are measured rather than asserted.
 */
export { Lab, LabFaults, LAB_RUN_ROOT } from './lab.js';
export type {
  EtcdMember,
  ExecOptions,
  ExecResult,
  LabEtcd,
  LabHaproxy,
  LabHost,
  LabKeepalived,
  LabOptions,
  NetemOptions,
} from './lab.js';
export type { ExitInfo, LabProcess } from './proc.js';
export { waitFor } from './proc.js';
export type { ArpProber, IcmpProber, Sampler } from './observe.js';
export * from './analysis.js';
export * from './evidence.js';
export { type LabSubnet } from './plan.js';
export { sweepStale } from './registry.js';
