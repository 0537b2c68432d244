#!/usr/bin/env bash
# Everything CI checks: set-up, lint (ESLint + Prettier), whole-repo typecheck, README figures against the
# committed benchmark results, unit and lab tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pnpm lint
pnpm typecheck
pnpm check:readme
pnpm test
