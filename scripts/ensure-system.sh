#!/usr/bin/env bash
# Installs the Debian packages the local stack and the tests need, when missing:
# JupyterHub 3 (the hub, its proxy and the classic notebook server), git and git-lfs, unzip (the
# chart test extracts helm from an npm package's zip), and Chromium for the browser
# tests. Needs root (or sudo). Safe to run again.
set -euo pipefail

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

# The local stack names the GitLab stand-in by this machine's name, since git-lfs sends nothing
# for localhost through a proxy; a Debian install resolves that name to loopback in /etc/hosts.
if ! getent hosts "$(hostname)" >/dev/null 2>&1; then
  echo "127.0.1.1 $(hostname)" | "${sudo[@]}" tee -a /etc/hosts >/dev/null
fi

want=()
[ -x /usr/bin/jupyterhub ] || want+=(jupyterhub)
command -v git >/dev/null 2>&1 || want+=(git)
[ -x /usr/lib/git-core/git-http-backend ] || want+=(git)
command -v git-lfs >/dev/null 2>&1 || want+=(git-lfs)
command -v unzip >/dev/null 2>&1 || want+=(unzip)
if [ "${1:-}" = "--with-browser" ]; then
  [ -x /usr/bin/chromium ] || want+=(chromium)
fi
[ ${#want[@]} -eq 0 ] && exit 0

echo "Installing Debian packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
