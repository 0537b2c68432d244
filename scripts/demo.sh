#!/usr/bin/env bash
# Set up the machine, then run the demo (test/demo.ts) in the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm demo
