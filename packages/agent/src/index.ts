export * from './group.js';
export * from './lane.js';
export * from './node.js';
export * from './vrrp-node.js';
export * from './control.js';
export * from './metrics.js';
