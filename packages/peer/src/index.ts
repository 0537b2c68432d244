export * from './heartbeat.js';
export * from './replay.js';
