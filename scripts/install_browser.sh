#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/deploy/test_browser.py), if missing.
#
# Idempotent: does nothing when /usr/bin/chromium exists. Never downloads a browser build
# of its own (no `playwright install`): Playwright drives this Chromium by its path.
# Needs root (CI and the sessions run as root); uses sudo when it is there and we are not root.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium is already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_browser.sh: not root and no sudo; install Debian's chromium package by hand" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
