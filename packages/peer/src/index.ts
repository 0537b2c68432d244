export * from './channel.js';
export * from './heartbeat.js';
export * from './replay.js';
export * from './udp.js';
