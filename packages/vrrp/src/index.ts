export * from './codec.js';
export * from './config.js';
export * from './ip.js';
export * from './machine.js';
export * from './transport.js';
export * from './instance.js';
export * from './transport6.js';
