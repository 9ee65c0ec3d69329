#!/usr/bin/env bash
# The local stack in one command: installs JupyterHub (Debian's package) and the npm
# dependencies when missing, then starts hub, GitLab stand-in and service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system.sh
bash scripts/ensure-node-modules.sh
# exec, here and in package.json: npm's child is then this node process itself, so a
# SIGINT or SIGTERM that npm passes on reaches it and stops the stack cleanly.
exec node --import tsx dev/local-stack.ts
