export * from './backend.js';
export * from './client.js';
export * from './keys.js';
export * from './records.js';
export * from './session.js';
export * from './store.js';
export * from './view.js';
