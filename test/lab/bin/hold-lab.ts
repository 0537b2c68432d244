/**
 * Creates a one-host lab, prints its prefix and waits: the lab's self-test kills this process (SIGTERM or
 * SIGKILL) to prove that an interrupted owner leaves nothing behind.
 */
import { Lab } from '../lab.js';

const lab = await Lab.create({ name: 'hold', hosts: 1 });
console.log(JSON.stringify({ prefix: lab.prefix, pid: process.pid }));
setInterval(() => undefined, 1 << 30);
