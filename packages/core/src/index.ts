export * from './errors.js';
export * from './clock.js';
export * from './logger.js';
export * from './net.js';
export * from './types.js';
export * from './config.js';
export * from './rules.js';
export * from './paths.js';
