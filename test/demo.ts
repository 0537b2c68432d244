/**
 * Placeholder demo (the lab engineer's stand-in until the real demo lands): bring the lab up, show it, prove
 * etcd answers from a host, tear it down.
 */
import { describeLab } from './lab/describe.js';
import { Lab } from './lab/index.js';

const t0 = performance.now();
const lab = await Lab.create({ name: 'demo', hosts: 3, etcdMembers: 3 });
try {
  console.log(describeLab(lab));
  console.log(`lab up in ${Math.round(performance.now() - t0)} ms`);
  const h1 = lab.hosts[0];
  if (h1 !== undefined) {
    await lab.etcdctl(h1, ['put', 'demo/hello', 'world']);
    const r = await lab.etcdctl(h1, ['endpoint', 'status', '-w', 'table']);
    console.log(r.stdout);
  }
} finally {
  await lab.destroy();
  console.log('lab torn down');
}
