#!/usr/bin/env bash
# Everything CI checks: set-up, lint (ESLint + Prettier), whole-repo typecheck, README figures against the
# committed benchmark results, unit and lab tests, a 2-minute soak of seeded faults (seed 50, so a failure
# reproduces with the same command), and the Debian package built, installed, failed over with and purged.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm lint
pnpm typecheck
pnpm check:readme
pnpm test
pnpm soak --minutes 2 --seed 50
bash scripts/package-check.sh
