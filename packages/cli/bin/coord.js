#!/usr/bin/env node
import { main } from '../dist/main.js';

// Exit explicitly: after a graceful stop nothing may keep a daemon alive (a lingering handle would make a
// supervisor escalate to SIGKILL, which takes child processes such as HAProxy with it).
process.exit(await main(process.argv.slice(2)));
