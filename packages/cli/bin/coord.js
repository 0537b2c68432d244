#!/usr/bin/env node
// grpc-js sets the TLS server name to the endpoint's address; for an IP literal Node warns (DEP0123) on every
// connection. Verifying against an IP SAN is what etcd certificates do: drop that one warning, keep the others.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const code = typeof rest[0] === 'object' && rest[0] !== null ? rest[0].code : rest[1];
  if (code === 'DEP0123') return;
  emitWarning(warning, ...rest);
};

const { main } = await import('../dist/main.js');

// Exit explicitly: after a graceful stop nothing may keep a daemon alive (a lingering handle would make a
// supervisor escalate to SIGKILL, which takes child processes such as HAProxy with it).
process.exit(await main(process.argv.slice(2)));
