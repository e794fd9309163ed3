#!/usr/bin/env bash
# Headless Chromium for the SDK's browser test (tests/browser_test.ts).
#   scripts/chromium.sh install    install Debian's chromium if it is missing (needs root)
set -euo pipefail

case "${1:-}" in
  install)
    if [ -x /usr/bin/chromium ] || [ -n "${SKYTALE_CHROMIUM:-}" ]; then
      echo "chromium already installed: ${SKYTALE_CHROMIUM:-/usr/bin/chromium}" >&2
      exit 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
      echo "chromium is missing; run as root (or: sudo apt-get install -y chromium)," \
        "or point SKYTALE_CHROMIUM at a Chromium or Chrome binary" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
    echo "installed chromium" >&2
    ;;
  *)
    echo "usage: scripts/chromium.sh install" >&2
    exit 2
    ;;
esac
