export * from './group.js';
export * from './lane.js';
export * from './node.js';
