#!/usr/bin/env bash
# The local stack in one command: installs JupyterHub (Debian's package) and the npm
# dependencies when missing, then starts hub, GitLab stand-in and service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh
bash scripts/ensure-node-modules.sh
exec npx tsx scripts/local-stack.ts
