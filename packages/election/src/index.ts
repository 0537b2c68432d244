export * from './candidates.js';
export * from './timing.js';
export * from './machine.js';
